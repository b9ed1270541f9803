"""A dictionary's trainer, in two layers: ``fit`` iterates (the shared loop of
``training/loop.py``), ``train_step`` takes one Adam step: the stacked maths with a stack of one
(``lm_saes.training.stack``), so a sweep member trained in a stack of many gets the same weights.

Around them: input normalisation (average norm sqrt(d), estimated on the first batches),
dead-feature tracking for AuxK, and checkpoints holding everything a resume needs (dictionary,
optimizer, dead counters, step). The loop adds the log's rate and the NaN guard.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import torch
from torch import Tensor

from lm_saes.config import TrainConfig
from lm_saes.dictionaries import Dictionary, LossOutput, TrainingContext
from lm_saes.dictionaries.parallel import SINGLE_DEVICE, Collectives
from lm_saes.training.data import Pair
from lm_saes.training.dead import DeadFeatureTracker
from lm_saes.training.loop import LoopPlan, TrainingDiverged, TrainingLoop  # noqa: F401 (TrainingDiverged: re-exported)
from lm_saes.training.resample import resample_dead
from lm_saes.training.schedules import (
    checkpoint_interval, dead_after_tokens, lr_at, peak_lr, sparsity_scale_at, total_steps,
)
from lm_saes.training.stack import TrainerStack


class Trainer(TrainingLoop):
    """Optimises one dictionary (or this rank's shard of it); holds no files (checkpoints go
    through ``state_dict``). Distributed, every rank runs the same steps in lockstep."""

    diverged_hint = "lower `lr`, check the cache for NaNs, or keep `normalize_activations = true`"

    def __init__(
        self, cfg: TrainConfig, dictionary: Dictionary, device: torch.device, comm: Collectives = SINGLE_DEVICE,
        ground_truth: Tensor | None = None,
    ) -> None:
        """``ground_truth``: [n_features, d] true feature directions (a synthetic cache's): the log
        then reports MMCS and the fraction of features recovered."""
        super().__init__(LoopPlan(total_steps(cfg), cfg.log_every, checkpoint_interval(cfg), cfg.batch_size),
                         device, comm)
        self.cfg, self.dictionary = cfg, dictionary.to(device)
        self.ground_truth = ground_truth.to(device) if ground_truth is not None else None
        fused = device.type in ("cuda", "cpu")  # one kernel for every parameter's update
        self.optimizer = torch.optim.Adam(dictionary.parameters(), lr=peak_lr(cfg), betas=cfg.adam_betas, fused=fused)
        local_features = dictionary.W_enc.shape[1]  # d_sae, or one tensor-parallel shard of it
        self.dead = DeadFeatureTracker(local_features, dead_after_tokens(cfg), device, comm)

    # --- the layers under the shared loop (``fit`` iterates, ``advance`` logs and checkpoints) --

    def train_step(self, x: Tensor, y: Tensor) -> LossOutput:
        return TrainerStack([self]).step(x, y)[0]

    def context(self) -> TrainingContext:
        """What this step's loss needs beyond the batch. No feature can be dead before the dead window
        has passed: no mask (and no AuxK) till then."""
        can_be_dead = self.step * self.cfg.batch_size >= self.dead.dead_after
        return TrainingContext(sparsity_scale_at(self.step, self.cfg), self.dead.dead_mask() if can_be_dead else None)

    def begin_step(self) -> None:
        """Before a step's forward-backward: this step's learning rate, no gradients."""
        if self._clock is None:
            self._clock = (time.perf_counter(), self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(self.step, self.cfg)
        self.optimizer.zero_grad(set_to_none=True)

    def end_step(self, out: LossOutput, x: Tensor, y: Tensor) -> None:
        """After a step's forward-backward (``out``, on the batch x, y): the Adam step and the bookkeeping."""
        self.dictionary.remove_parallel_grad()
        self.optimizer.step()
        self.dictionary.normalize_decoder()
        self.dead.update(out.fired, len(x))
        self.nonfinite |= ~torch.isfinite(out.loss.detach())
        self.step += 1
        if self.cfg.resample_every and self.step % self.cfg.resample_every == 0:
            self.resample(x, y)

    def resample(self, x: Tensor, y: Tensor) -> None:
        """Resample the dead features from this batch (seeded by the step, so resume is exact)."""
        d = self.dictionary
        generator = torch.Generator(self.device).manual_seed(self.cfg.seed * 1_000_003 + self.step)
        features = resample_dead(d, self.optimizer, self.dead.dead_mask(), *d.training_pair(x, y), generator)
        self.dead.tokens_since_fired[features] = 0

    # --- normalisation, logging, safety ---------------------------------------------------

    @torch.no_grad()
    def initialize(self, pairs: list[Pair]) -> None:
        """A fresh run's data-dependent start, from the first batches of its stream: the
        normalisation scales, then the dictionary's own start (``Dictionary.init_from_data``)."""
        self.fit_scales(pairs)
        d = self.dictionary
        scaled = [d.training_pair(x, y) for x, y in pairs]
        x_mean = self.comm.batch_mean(torch.cat([x for x, _ in scaled]).mean(0))
        y_mean = self.comm.batch_mean(torch.cat([y for _, y in scaled]).mean(0))
        d.init_from_data(*scaled[0], x_mean, y_mean)  # one batch is enough to fit the start's scale

    @torch.no_grad()
    def fit_scales(self, pairs: list[Pair]) -> None:
        """Scales that give inputs and targets an average norm of sqrt(d) (1 if disabled). A
        dictionary that normalises each token needs no input scale; a transcoder's targets, scaled by
        their input's rho, get the scale that brings them to average norm sqrt(d_out)."""
        if not self.cfg.normalize_activations:
            return
        d = self.dictionary
        x, y = torch.cat([x for x, _ in pairs]), torch.cat([y for _, y in pairs])
        rho = d.token_factors(x)
        x_norm = self.comm.batch_mean(x.norm(dim=1).mean()) if rho is None else d.d_in**0.5
        y_norm = self.comm.batch_mean((y.norm(dim=1, keepdim=True) * (1 if rho is None else rho)).mean())
        scale_in = d.d_in**0.5 / float(x_norm)
        scale_out = scale_in if not d.transcoder else d.d_out**0.5 / float(y_norm)
        d.set_scales(scale_in, scale_out)

    @torch.no_grad()
    def log_record(self, out: LossOutput, x: Tensor, y: Tensor, tokens_per_s: float) -> dict[str, float]:
        from lm_saes.evaluation.metrics import explained_variance

        d = self.dictionary
        recon = d(x * d.input_scale).recon / d.output_scale
        return {
            "step": self.step, "tokens": self.step * self.cfg.batch_size, "lr": lr_at(self.step - 1, self.cfg),
            "loss": float(out.loss), **{k: float(v) for k, v in out.terms.items()},
            "explained_variance": float(explained_variance(recon, y)),
            "dead_fraction": self.dead.dead_fraction(), **self.ground_truth_record(), "tokens_per_s": tokens_per_s,
        }

    @torch.no_grad()
    def ground_truth_record(self) -> dict[str, float]:
        """MMCS and features recovered against the true features, over every feature shard."""
        from lm_saes.evaluation.metrics import RECOVERED_COSINE, best_cosines

        if self.ground_truth is None:
            return {}
        local = best_cosines(self.dictionary.W_dec, self.ground_truth)  # [n_true], this shard's best
        best = -self.comm.all_min(-local) if self.comm.distributed else local
        live = self.dictionary.W_dec[~self.dead.dead_mask()]  # this shard's live latents
        per_latent = best_cosines(self.ground_truth, live)  # [n_live]
        totals = self.comm.feature_sum(torch.stack([per_latent.sum(), per_latent.new_tensor(len(per_latent))]))
        return {"mmcs": float(best.mean()), "features_recovered": float((best >= RECOVERED_COSINE).float().mean()),
                "dictionary_mmcs": float(totals[0] / totals[1]) if totals[1] > 0 else float("nan")}

    def autocast(self):
        if self.cfg.autocast == "bfloat16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # --- checkpoints ----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            # copies: in a stack the tensors are views of every member's storage, which torch.save would write whole
            "dictionary": {k: v.clone() for k, v in self.dictionary.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "dead": self.dead.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = state["step"]
        self.dictionary.load_state_dict(state["dictionary"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.dead.load_state_dict(state["dead"])
