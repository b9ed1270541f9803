"""SPD's trainer: the shared loop (``training/loop.py``) over one SPD step.

One step on a batch x (and, for a cached module, its cached output y):

1. the target's own forward, recording every decomposed matrix's input (no gradient);
2. the causal importances g of every subcomponent from its inner activation;
3. losses: stochastic reconstruction (every matrix masked by m = g + (1 - g) r, r ~ U(0, 1),
   the delta component by its own r; ``n_mask_samples`` draws averaged), layerwise stochastic
   reconstruction (one matrix masked at a time, the others as they are), importance minimality
   (coefficient ramped over ``importance_warmup_steps``, p annealed), and faithfulness;
4. AdamW on U, V and the importance MLPs at the scheduled learning rate (``scheduled_lr``: the
   dictionaries' warmup and decay); gradients averaged over the data-parallel ranks.

Before the first step of a fresh run, ``faithfulness_warmup`` fits V U to the target's
matrices alone (AdamW at its own learning rate and weight decay), taking no batches.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor

from lm_saes.dictionaries.parallel import SINGLE_DEVICE, Collectives
from lm_saes.spd.components import Masks
from lm_saes.spd.config import SPDTrainConfig
from lm_saes.spd.importance import CausalImportance, stochastic_mask
from lm_saes.spd.losses import ci_l0_of, faithfulness_loss, importance_minimality, output_loss, p_at
from lm_saes.spd.model import ComponentModel
from lm_saes.spd.sampling import SINGLE, Layout, draw_seed
from lm_saes.training.loop import LoopPlan, TrainingLoop
from lm_saes.training.schedules import CHECKPOINTS_PER_RUN, linear_ramp, scheduled_lr

STOCHASTIC, LAYERWISE = 0, 1  # mask families: each loss draws its own masks


class SPDStep(NamedTuple):
    loss: Tensor
    terms: dict[str, Tensor]  # each loss before its coefficient
    importances: dict[str, CausalImportance]


def checkpoint_every(cfg: SPDTrainConfig) -> int:
    if cfg.checkpoint_every is not None:
        return cfg.checkpoint_every
    return max(1, cfg.steps // CHECKPOINTS_PER_RUN)


class SPDTrainer(TrainingLoop):
    """Optimises one decomposition (this rank's slice of its subcomponents); holds no files."""

    diverged_hint = "lower `lr` or spd.importance_coefficient"

    def __init__(self, cfg: SPDTrainConfig, model: ComponentModel, loss_kind: str, device: torch.device,
                 comm: Collectives = SINGLE_DEVICE, layout: Layout = SINGLE) -> None:
        super().__init__(LoopPlan(cfg.steps, cfg.log_every, checkpoint_every(cfg), cfg.batch_size), device, comm)
        self.cfg, self.model, self.loss_kind, self.layout = cfg, model, loss_kind, layout
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=cfg.adam_betas,
                                           weight_decay=cfg.weight_decay)

    # --- the step -------------------------------------------------------------------------

    def lr_at(self, step: int) -> float:
        cfg = self.cfg
        return scheduled_lr(step, cfg.steps, cfg.lr, cfg.lr_warmup_steps, cfg.lr_decay, cfg.lr_decay_fraction)

    def importance_coefficient_at(self, step: int) -> float:
        s = self.cfg.spd
        return s.importance_coefficient * linear_ramp(step, s.importance_warmup_steps)

    def masks(self, family: int, sample: int, importances: dict[str, CausalImportance],
              deltas: dict[str, Tensor] | None) -> dict[str, Masks]:
        """One stochastic mask of every decomposed matrix (and of its delta component)."""
        found, names = {}, list(self.model.plan)
        for j, name in enumerate(names):
            g = importances[name].lower
            draw = ((family * self.cfg.spd.n_mask_samples + sample) * len(names) + j) * 2
            C = self.model.plan[name].C
            r = self.layout.uniform(draw_seed(self.cfg.seed, self.step, draw), tuple(g.shape[:-1]), C, g.device)
            delta_mask = delta = None
            if deltas is not None:
                delta_mask = self.layout.uniform(draw_seed(self.cfg.seed, self.step, draw + 1), tuple(g.shape[:-1]),
                                                 None, g.device)
                delta = deltas[name]
            found[name] = Masks(stochastic_mask(g, r), delta_mask, delta)
        return found

    def losses(self, x: Tensor, y: Tensor | None = None) -> SPDStep:
        s, model = self.cfg.spd, self.model
        target, inputs = model.run_capturing(x)
        if y is not None:  # a cached module: its cached output is the target
            target = y
        importances = model.causal_importances(inputs)
        deltas = model.weight_deltas() if s.delta_component or s.faithfulness_coefficient else None
        terms: dict[str, Tensor] = {}
        total = torch.zeros((), device=self.device)
        if s.faithfulness_coefficient:
            terms["faithfulness"] = faithfulness_loss(deltas)
            total = total + s.faithfulness_coefficient * terms["faithfulness"]
        masked_deltas = deltas if s.delta_component else None
        if s.stochastic_coefficient:
            losses = [output_loss(model.run(x, self.masks(STOCHASTIC, i, importances, masked_deltas)), target,
                                  self.loss_kind) for i in range(s.n_mask_samples)]
            terms["stochastic_recon"] = torch.stack(losses).mean()
            total = total + s.stochastic_coefficient * terms["stochastic_recon"]
        if s.layerwise_coefficient:
            losses = []
            for i in range(s.n_mask_samples):
                masks = self.masks(LAYERWISE, i, importances, masked_deltas)
                losses += [output_loss(model.run(x, {name: m}), target, self.loss_kind) for name, m in masks.items()]
            terms["layerwise_recon"] = torch.stack(losses).mean()
            total = total + s.layerwise_coefficient * terms["layerwise_recon"]
        p = p_at(self.step, self.cfg.steps, s.p, s.p_anneal)
        upper = {name: ci.upper for name, ci in importances.items()}
        terms["importance_minimality"] = importance_minimality(upper, p, s.importance_eps, self.comm)
        total = total + self.importance_coefficient_at(self.step) * terms["importance_minimality"]
        return SPDStep(total, terms, importances)

    def train_step(self, x: Tensor, y: Tensor | None = None) -> SPDStep:
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(self.step)
        self.optimizer.zero_grad(set_to_none=True)
        out = self.losses(x, y)
        out.loss.backward()
        self.comm.average_gradients(list(self.model.parameters()))
        self.optimizer.step()
        self.nonfinite |= ~torch.isfinite(out.loss.detach())
        self.step += 1
        return out

    def faithfulness_warmup(self) -> None:
        """Fit V U to the target's matrices alone (a fresh run's start; no batches)."""
        s = self.cfg.spd
        if not s.faithfulness_warmup_steps:
            return
        parameters = self.model.component_parameters()
        optimizer = torch.optim.AdamW(parameters, lr=s.faithfulness_warmup_lr,
                                      weight_decay=s.faithfulness_warmup_weight_decay)
        for _ in range(s.faithfulness_warmup_steps):
            optimizer.zero_grad(set_to_none=True)
            faithfulness_loss(self.model.weight_deltas()).backward()
            self.comm.average_gradients(parameters)  # the same on every data rank already; keeps them in step
            optimizer.step()

    # --- logging and checkpoints ----------------------------------------------------------

    @torch.no_grad()
    def log_record(self, out: SPDStep, x: Tensor, y: Tensor | None, per_s: float) -> dict[str, float]:
        l0 = ci_l0_of({n: ci.lower for n, ci in out.importances.items()}, self.cfg.spd.ci_threshold, self.comm)
        return {
            "step": self.step, "lr": self.lr_at(self.step - 1), "loss": float(out.loss),
            **{k: float(v) for k, v in out.terms.items()},
            "faithfulness": float(faithfulness_loss(self.model.weight_deltas())),
            "ci_l0": sum(l0.values()), **{f"ci_l0/{name}": v for name, v in l0.items()},
            "p": p_at(self.step - 1, self.cfg.steps, self.cfg.spd.p, self.cfg.spd.p_anneal),
            "importance_coefficient": self.importance_coefficient_at(self.step - 1), "examples_per_s": per_s,
        }

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "decomposition": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = state["step"]
        self.model.load_state_dict(state["decomposition"])
        self.optimizer.load_state_dict(state["optimizer"])
