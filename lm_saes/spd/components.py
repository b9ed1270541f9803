"""Rank-one subcomponents of one weight matrix, and the masked forward of the module they replace.

Every decomposed matrix is written W [d_in, d_out] in the orientation of the forward x @ W
(nn.Linear's weight transposed; Hugging Face Conv1D's weight as stored; nn.Embedding's weight,
whose input is a one-hot token; an inserted identity, I [d, d]), and approximated by C rank-one
subcomponents: W ~ V @ U = sum_c V[:, c] U[c, :], with V [d_in, C] and U [C, d_out]. Init as
spd: V ~ N(0, 1/d_in), U ~ N(0, 1/C).

Masked forward of a module on input x with masks m [..., C] (and optionally the delta component
Delta = W - V U with its own mask m_delta [...]):

    h = x @ V  (an embedding: the rows V[token])          the inner activations [..., C]
    out = (h * m) @ U + m_delta (x @ Delta) + bias        (the module's frozen bias, if any)

Under tensor parallelism each rank holds a slice of the C subcomponents: its (h * m) @ U is a
partial sum, added over the ranks (``Collectives.reduce``), and the gradient reaching x from the
slice is summed back (``Collectives.enter``); Delta is built from the reduced V @ U, the same on
every rank.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from jaxtyping import Float
from torch import Tensor, nn

from lm_saes.dictionaries.parallel import SINGLE_DEVICE, Collectives

LINEAR, CONV1D, EMBEDDING, IDENTITY = "linear", "conv1d", "embedding", "identity"
SUPPORTED = "nn.Linear, Hugging Face Conv1D (transformers.pytorch_utils.Conv1D) and nn.Embedding"


def module_kind(module: nn.Module) -> str | None:
    """Which kind of decomposable matrix ``module`` holds, or None."""
    if isinstance(module, nn.Linear):
        return LINEAR
    if isinstance(module, nn.Embedding):
        return EMBEDDING
    if type(module).__name__ == "Conv1D" and hasattr(module, "nf") and hasattr(module, "weight"):
        return CONV1D  # transformers.pytorch_utils.Conv1D (GPT-2): y = x @ weight + bias, weight [d_in, d_out]
    return None


def target_matrix(module: nn.Module | None, kind: str, width: int = 0) -> Float[Tensor, "d_in d_out"]:
    """The module's weight in the x @ W orientation (an identity insertion: I [width, width])."""
    if kind == IDENTITY:
        return torch.eye(width)
    weight = module.weight.detach()
    return weight.T if kind == LINEAR else weight


class Masks(NamedTuple):
    """What one masked forward of a module multiplies: its subcomponents and its delta component."""

    components: Float[Tensor, "... C"]
    delta: Float[Tensor, "..."] | None = None  # None: no delta component in this forward
    delta_weight: Float[Tensor, "d_in d_out"] | None = None  # W - V U when already computed this step


class Subcomponents(nn.Module):
    """V [d_in, C] and U [C, d_out] of one matrix (or of this rank's slice of its C subcomponents).

    A tied module owns no parameters: its V and U are its source's U and V, transposed."""

    def __init__(self, kind: str, d_in: int, d_out: int, C: int, source: Subcomponents | None = None) -> None:
        super().__init__()
        self.kind, self.d_in, self.d_out, self.C = kind, d_in, d_out, C
        object.__setattr__(self, "source", source)  # not a submodule: its parameters are the source's
        if source is None:
            self.V_own = nn.Parameter(torch.randn(d_in, C) / math.sqrt(d_in))
            self.U_own = nn.Parameter(torch.randn(C, d_out) / math.sqrt(C))

    @property
    def V(self) -> Float[Tensor, "d_in C"]:
        return self.source.U_own.T if self.source is not None else self.V_own

    @property
    def U(self) -> Float[Tensor, "C d_out"]:
        return self.source.V_own.T if self.source is not None else self.U_own

    def inner(self, x: Tensor) -> Float[Tensor, "... C"]:
        """h = x @ V, or V's rows for token ids."""
        return self.V[x] if self.kind == EMBEDDING else x @ self.V

    def product(self, comm: Collectives = SINGLE_DEVICE) -> Float[Tensor, "d_in d_out"]:
        """V @ U summed over every rank's subcomponents."""
        return comm.reduce(self.V @ self.U)


def masked_forward(
    parts: Subcomponents, x: Tensor, masks: Masks, weight: Float[Tensor, "d_in d_out"],
    bias: Tensor | None, comm: Collectives = SINGLE_DEVICE,
) -> Tensor:
    """The module's output with its subcomponents masked (see the module docstring)."""
    entered = x if parts.kind == EMBEDDING else comm.enter(x)
    out = comm.reduce((parts.inner(entered) * masks.components) @ parts.U)  # [..., d_out]
    if masks.delta is not None:
        delta = masks.delta_weight if masks.delta_weight is not None else weight - parts.product(comm)  # [d_in, d_out]
        delta_out = delta[x] if parts.kind == EMBEDDING else x @ delta
        out = out + masks.delta[..., None] * delta_out
    return out if bias is None else out + bias
