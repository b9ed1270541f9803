"""Learning-rate and sparsity-penalty schedules: pure functions of the step."""

from __future__ import annotations

import math

from lm_saes.config import TrainConfig


def total_steps(cfg: TrainConfig) -> int:
    return cfg.total_tokens // cfg.batch_size


CHECKPOINTS_PER_RUN = 10  # by default a killed run loses at most a tenth of its steps


def checkpoint_interval(cfg: TrainConfig) -> int:
    """Steps between checkpoints: ``checkpoint_every``, or a tenth of the run (0: only at the end)."""
    if cfg.checkpoint_every is not None:
        return cfg.checkpoint_every
    return max(1, total_steps(cfg) // CHECKPOINTS_PER_RUN)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup over lr_warmup_steps, constant, then decay to 0 over the last lr_decay_fraction."""
    steps = total_steps(cfg)
    if step < cfg.lr_warmup_steps:
        return cfg.lr * (step + 1) / cfg.lr_warmup_steps
    decay_steps = int(cfg.lr_decay_fraction * steps)
    decay_start = steps - decay_steps
    if cfg.lr_decay == "constant" or step < decay_start or decay_steps == 0:
        return cfg.lr
    progress = (step - decay_start) / decay_steps  # in [0, 1)
    if cfg.lr_decay == "linear":
        return cfg.lr * (1 - progress)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * progress))


def sparsity_scale_at(step: int, cfg: TrainConfig) -> float:
    """Factor on the sparsity penalty: linear from 0 to 1 over sparsity_warmup_steps."""
    if cfg.sparsity_warmup_steps == 0:
        return 1.0
    return min(1.0, (step + 1) / cfg.sparsity_warmup_steps)
