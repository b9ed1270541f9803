"""Learning-rate and sparsity-penalty schedules, and the run-relative defaults behind them: pure
functions of the config (and the step).

Fields left unset (None) scale with the run, so the same defaults work from 100k tokens to
billions: the learning rate with the dictionary's size, the warmups and the dead-feature window
with the run's length.
"""

from __future__ import annotations

import math

from lm_saes.config import TrainConfig

MAX_DEAD_WINDOW = 10_000_000  # tokens; Gao et al. 2024 count a latent dead after 10M tokens without firing
DEAD_WINDOW_FRACTION = 1 / 3  # of the run, when shorter: AuxK acts in short runs (in their last two thirds), but
# only on latents rare enough: AuxK turns a latent it trains into a residual-explainer, so too short a window
# kills rare, live ones (quick start: 59% dead with a 5% window, 4% with a third)


def total_steps(cfg: TrainConfig) -> int:
    return cfg.total_tokens // cfg.batch_size


def peak_lr(cfg: TrainConfig) -> float:
    """``cfg.lr``, or 2e-4 / sqrt(d_sae / 2^14) (Gao et al. 2024, fitted over dictionary sizes)."""
    if cfg.lr is not None:
        return cfg.lr
    return 2e-4 / math.sqrt(cfg.dictionary.d_sae / 2**14)


def warmup_steps(cfg: TrainConfig) -> int:
    if cfg.lr_warmup_steps is not None:
        return cfg.lr_warmup_steps
    return round(cfg.lr_warmup_fraction * total_steps(cfg))


def sparsity_warmup_steps(cfg: TrainConfig) -> int:
    if cfg.sparsity_warmup_steps is not None:
        return cfg.sparsity_warmup_steps
    return round(cfg.sparsity_warmup_fraction * total_steps(cfg))


def dead_after_tokens(cfg: TrainConfig) -> int:
    """``cfg.dead_after_tokens``, or a third of the run's tokens (at least one batch, at most 10M)."""
    if cfg.dead_after_tokens is not None:
        return cfg.dead_after_tokens
    return max(cfg.batch_size, min(MAX_DEAD_WINDOW, int(DEAD_WINDOW_FRACTION * cfg.total_tokens)))


def resolved_schedule(cfg: TrainConfig) -> dict[str, float]:
    """The values the run uses for every field that may be left to its default (for the record)."""
    return {"lr": peak_lr(cfg), "lr_warmup_steps": warmup_steps(cfg), "steps": total_steps(cfg),
            "lr_decay_steps": int(cfg.lr_decay_fraction * total_steps(cfg)),
            "sparsity_warmup_steps": sparsity_warmup_steps(cfg), "dead_after_tokens": dead_after_tokens(cfg),
            "checkpoint_every": checkpoint_interval(cfg)}


CHECKPOINTS_PER_RUN = 10  # by default a killed run loses at most a tenth of its steps


def checkpoint_interval(cfg: TrainConfig) -> int:
    """Steps between checkpoints: ``checkpoint_every``, or a tenth of the run (0: only at the end)."""
    if cfg.checkpoint_every is not None:
        return cfg.checkpoint_every
    return max(1, total_steps(cfg) // CHECKPOINTS_PER_RUN)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup, constant, then decay to 0 over the last lr_decay_fraction of the steps."""
    return scheduled_lr(step, total_steps(cfg), peak_lr(cfg), warmup_steps(cfg), cfg.lr_decay, cfg.lr_decay_fraction)


def scheduled_lr(step: int, steps: int, lr: float, warmup: int, decay: str, decay_fraction: float) -> float:
    """The learning rate at ``step`` of ``steps``: linear warmup over ``warmup`` steps to ``lr``,
    constant, then a ``decay`` ("constant", "linear" or "cosine") to 0 over the last
    ``decay_fraction`` of the steps. Every trainer's schedule (a dictionary's, SPD's)."""
    if step < warmup:
        return lr * (step + 1) / warmup
    decay_steps = int(decay_fraction * steps)
    decay_start = steps - decay_steps
    if decay == "constant" or step < decay_start or decay_steps == 0:
        return lr
    progress = (step - decay_start) / decay_steps  # in [0, 1)
    if decay == "linear":
        return lr * (1 - progress)
    return lr * 0.5 * (1 + math.cos(math.pi * progress))


def sparsity_scale_at(step: int, cfg: TrainConfig) -> float:
    """Factor on the sparsity penalty: linear from 0 to 1 over the sparsity warmup."""
    return linear_ramp(step, sparsity_warmup_steps(cfg))


def linear_ramp(step: int, warmup: int) -> float:
    """A factor rising linearly from 1 / warmup at step 0 to 1 at step warmup - 1 (1 without warmup)."""
    if warmup == 0:
        return 1.0
    return min(1.0, (step + 1) / warmup)
