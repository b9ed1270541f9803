"""Random draws of an SPD run that do not depend on how the ranks are laid out.

Every random tensor (a toy batch, a mask's r ~ U(0, 1)) is drawn whole, for the global batch and
all C subcomponents, from a generator seeded by (seed, step, which draw), and each rank keeps its
rows (its data-parallel share) and its subcomponents (its tensor-parallel slice). A run on one
process, on 2 data-parallel ranks or on 2 x 2 ranks therefore sees the same numbers, and a
resumed run draws exactly what the uninterrupted one would have.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lm_saes.dictionaries.parallel import feature_slice

_MODULUS = 2**62


def draw_seed(seed: int, step: int, draw: int) -> int:
    """A generator seed for draw ``draw`` of step ``step`` of a run seeded ``seed``."""
    return ((seed * 1_000_003 + step) * 1_000_033 + draw) % _MODULUS


class Layout:
    """Which rows of the global batch and which subcomponents this rank keeps."""

    def __init__(self, data: int = 1, data_rank: int = 0, tensor: int = 1, tensor_rank: int = 0) -> None:
        self.data, self.data_rank, self.tensor, self.tensor_rank = data, data_rank, tensor, tensor_rank

    def rows(self, t: Tensor) -> Tensor:
        """This rank's equal share of the first axis."""
        share = t.shape[0] // self.data
        return t[self.data_rank * share:(self.data_rank + 1) * share]

    def components(self, t: Tensor) -> Tensor:
        """This rank's slice of the last axis (the C subcomponents)."""
        return t[..., feature_slice(t.shape[-1], self.tensor_rank, self.tensor)]

    def uniform(self, seed: int, local_lead: tuple[int, ...], C: int | None, device: torch.device) -> Tensor:
        """U(0, 1) of shape [*local_lead] (+ [C / tensor] when C is given): this rank's part of one
        global draw of shape [local_lead[0] * data, *local_lead[1:]] (+ [C])."""
        shape = (local_lead[0] * self.data, *local_lead[1:], *((C,) if C is not None else ()))
        generator = torch.Generator(device).manual_seed(seed)
        whole = torch.rand(shape, generator=generator, device=device)
        mine = self.rows(whole)
        return self.components(mine) if C is not None else mine


SINGLE = Layout()
