"""SPD's losses (Bushnaq et al. 2025), as pure functions of tensors.

- faithfulness: mean over every decomposed parameter of (W - sum_c U_c V_c)^2;
- output reconstruction: MSE over every output value, or KL(target || masked) of the next-token
  distributions averaged over tokens (language models);
- importance minimality: sum over decomposed matrices and subcomponents of the batch mean of
  (g_upper + eps)^p, reduced over the tensor-parallel slices of the subcomponents.

Schedules of its knobs: p annealed linearly (``p_at``), the importance coefficient ramped up
(``training.schedules.linear_ramp``).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from lm_saes.dictionaries.parallel import SINGLE_DEVICE, Collectives
from lm_saes.spd.config import PAnneal


def faithfulness_loss(deltas: Mapping[str, Float[Tensor, "d_in d_out"]]) -> Float[Tensor, ""]:
    """Sum of squared W - V U over every decomposed matrix, divided by their total size."""
    total = sum(d.pow(2).sum() for d in deltas.values())
    return total / sum(d.numel() for d in deltas.values())


def output_loss(pred: Tensor, target: Tensor, kind: str) -> Float[Tensor, ""]:
    """``mse``: mean squared error over every value; ``kl``: mean over positions of
    KL(softmax(target) || softmax(pred)) over the last (vocabulary) axis."""
    if kind == "mse":
        return F.mse_loss(pred, target)
    log_pred = F.log_softmax(pred.float(), dim=-1).flatten(0, -2)  # [tokens, vocab]
    log_target = F.log_softmax(target.float(), dim=-1).flatten(0, -2)
    return F.kl_div(log_pred, log_target, log_target=True, reduction="batchmean")


def importance_minimality(upper: Mapping[str, Float[Tensor, "... C"]], p: float, eps: float,
                          comm: Collectives = SINGLE_DEVICE) -> Float[Tensor, ""]:
    """sum over matrices and subcomponents of mean over inputs of (g + eps)^p."""
    total = 0.0
    for g in upper.values():
        total = total + comm.reduce((g + eps).pow(p).flatten(0, -2).mean(0).sum())
    return total


def p_at(step: int, steps: int, p: float, anneal: PAnneal | None) -> float:
    """The importance exponent at ``step``: ``p``, annealed linearly to ``anneal.final`` between
    its start and end fractions of the run."""
    if anneal is None:
        return p
    frac = step / steps
    if frac <= anneal.start_fraction:
        return p
    if frac >= anneal.end_fraction:
        return anneal.final
    return p + (anneal.final - p) * (frac - anneal.start_fraction) / (anneal.end_fraction - anneal.start_fraction)


def ci_l0(lower: Float[Tensor, "... C"], threshold: float, comm: Collectives = SINGLE_DEVICE) -> float:
    """Subcomponents with causal importance above ``threshold`` per input, averaged (CI-L0)."""
    counts = (lower > threshold).float().flatten(0, -2).sum(-1).mean()
    return float(comm.feature_sum(counts))


@torch.no_grad()
def ci_l0_of(importances: Mapping[str, Tensor], threshold: float, comm: Collectives = SINGLE_DEVICE
             ) -> dict[str, float]:
    return {name: ci_l0(g, threshold, comm) for name, g in importances.items()}
