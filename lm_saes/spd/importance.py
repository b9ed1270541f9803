"""Causal importance: how much each subcomponent matters on an input (Bushnaq et al. 2025).

For subcomponent c of a module, g_c(x) = sigma(f_c(h_c)) with h_c = x . V_c its inner activation
and f_c a small MLP of one input (hidden widths ``hidden``, GELU). The MLPs of all C subcomponents
of a module are evaluated together: each layer is one batched matmul over the component axis
(weights [C, in, out]), never a loop over components (``reference_forward`` is that loop, for
tests). Two hard sigmoids sigma turn f into importances in [0, 1]:

- lower-leaky, for the masks: clamp(f, 0, 1) forward; below 0 a gradient of slope ``leak`` that
  can only raise f (so a subcomponent switched off can come back);
- upper-leaky, for the importance loss: f above 1 is 1 + leak (f - 1) (so f is pushed back to 1),
  clamp below.

Stochastic masks: m_c = g_c + (1 - g_c) r_c with r_c ~ U(0, 1): a subcomponent of importance 1 is
always kept, one of importance 0 is kept at a random fraction.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn


class _LowerLeakyHardSigmoid(torch.autograd.Function):
    """clamp(x, 0, 1); backward: the gradient inside (0, 1]; below 0 ``leak`` times it when it would raise x."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, leak: float) -> Tensor:
        ctx.save_for_backward(x)
        ctx.leak = leak
        return x.clamp(0, 1)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (x,) = ctx.saved_tensors
        below = torch.where(grad < 0, ctx.leak * grad, torch.zeros_like(grad))  # descent raises x only
        return torch.where(x <= 0, below, torch.where(x <= 1, grad, torch.zeros_like(grad))), None


def lower_leaky_hard_sigmoid(x: Tensor, leak: float) -> Tensor:
    return _LowerLeakyHardSigmoid.apply(x, leak)


def upper_leaky_hard_sigmoid(x: Tensor, leak: float) -> Tensor:
    return torch.where(x > 1, 1 + leak * (x - 1), x.clamp(0, 1))


class CausalImportance(NamedTuple):
    lower: Float[Tensor, "... C"]  # for the masks, in [0, 1]
    upper: Float[Tensor, "... C"]  # for the importance loss, >= 0


class ImportanceMLPs(nn.Module):
    """f_c for every subcomponent c of one module: ``weights[i]`` [C, in, out], ``biases[i]`` [C, out].

    Initialised as spd does: Kaiming normal (gain sqrt 2 before a GELU, 1 for the output), zero biases."""

    def __init__(self, C: int, hidden: list[int]) -> None:
        super().__init__()
        widths = [1, *hidden, 1]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
            gain = math.sqrt(2) if i < len(widths) - 2 else 1.0
            self.weights.append(nn.Parameter(torch.randn(C, n_in, n_out) * gain / math.sqrt(n_in)))
            self.biases.append(nn.Parameter(torch.zeros(C, n_out)))

    def forward(self, h: Float[Tensor, "... C"]) -> Float[Tensor, "... C"]:
        """f_c(h_c) for every c: one batched matmul over the C axis per layer."""
        lead = h.shape[:-1]
        x = h.reshape(-1, h.shape[-1], 1).transpose(0, 1)  # [C, rows, 1]
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            x = torch.baddbmm(b[:, None, :], x, w)  # [C, rows, out]
            if i < last:
                x = F.gelu(x)
        return x[..., 0].transpose(0, 1).reshape(*lead, -1)

    def reference_forward(self, h: Float[Tensor, "... C"]) -> Float[Tensor, "... C"]:
        """The slow twin of ``forward``: each subcomponent's MLP on its own, in a Python loop."""
        outputs = []
        last = len(self.weights) - 1
        for c in range(h.shape[-1]):
            x = h[..., c:c + 1]  # [..., 1]
            for i, (w, b) in enumerate(zip(self.weights, self.biases)):
                x = x @ w[c] + b[c]
                if i < last:
                    x = F.gelu(x)
            outputs.append(x[..., 0])
        return torch.stack(outputs, dim=-1)


def causal_importance(f: Tensor, leak: float) -> CausalImportance:
    """The two hard sigmoids of the importance MLPs' output ``f``."""
    return CausalImportance(lower_leaky_hard_sigmoid(f, leak), upper_leaky_hard_sigmoid(f, leak))


def stochastic_mask(importance: Float[Tensor, "... C"], r: Float[Tensor, "... C"]) -> Float[Tensor, "... C"]:
    """m = g + (1 - g) r: kept whole where important, at a random fraction elsewhere."""
    return importance + (1 - importance) * r
