"""Per-feature histograms of nonzero activations in one pass, without knowing the maxima first.

Feature i's bins are ``bins`` equal-width bins of [0, R_i), where R_i is the smallest power of two
strictly above the largest activation seen so far. When a batch raises the maximum past R_i, R_i
doubles s times and bin j becomes bin j >> s: each new bin is the union of 2^s old ones, so no
count is ever split or guessed. The final histogram is therefore exactly the one computed
directly with bins of width R / bins, R = the smallest power of two above the final maximum,
whatever the batch order or size.

Bins above the maximum are empty and are dropped from the output: a feature shows the first
floor(max * bins / R) + 1 bins, between bins/2 + 1 and bins of them, the last one holding the max.
Dividing by the power of two R is exact in floating point and the bin index is computed in float64,
so every value lands in the bin its real value belongs to.

Memory: ``d_sae * bins`` counts.
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor

NO_DATA = -(2**20)  # exponent of a feature that has not fired yet


class DyadicHistogram:
    def __init__(self, d_sae: int, bins: int, device: torch.device | str = "cpu") -> None:
        self.bins = bins
        self.counts = torch.zeros(d_sae, bins, dtype=torch.int64, device=device)
        self.exponent = torch.full((d_sae,), NO_DATA, dtype=torch.int64, device=device)  # R = 2^exponent

    def update(
        self, features: Int[Tensor, "n"], values: Float[Tensor, "n"], batch_max: Float[Tensor, "d_sae"]
    ) -> None:
        """Count n positive activations ``values`` of ``features``; ``batch_max`` is their per-feature max."""
        fired = batch_max > 0
        exponent = torch.where(fired, torch.frexp(batch_max.double()).exponent.long(), NO_DATA)
        exponent = torch.maximum(self.exponent, exponent)
        shift = exponent - self.exponent
        grown = ((shift > 0) & (self.exponent != NO_DATA)).nonzero().squeeze(1)
        if len(grown):
            self._rebin(grown, shift[grown])
        self.exponent = exponent
        if len(values):
            index = bin_index(values, self.exponent[features], self.bins)
            self.counts.view(-1).index_add_(0, features * self.bins + index, torch.ones_like(index))

    def _rebin(self, rows: Int[Tensor, "r"], shift: Int[Tensor, "r"]) -> None:
        """Merge bins of ``rows`` whose range grew by 2^shift: bin j -> j >> shift."""
        old = self.counts[rows]  # [r, bins]
        target = torch.arange(self.bins, device=old.device)[None, :] >> shift.clamp(max=62)[:, None]
        self.counts[rows] = torch.zeros_like(old).scatter_add_(1, target, old)

    def upper(self) -> Float[Tensor, "d_sae"]:
        """R per feature (0 for a feature that never fired)."""
        fired = self.exponent != NO_DATA
        return torch.where(fired, torch.ldexp(torch.ones_like(self.exponent, dtype=torch.float64),
                                              self.exponent.clamp(min=-1000)), 0.0)


def bin_index(values: Float[Tensor, "n"], exponent: Int[Tensor, "n"], bins: int) -> Int[Tensor, "n"]:
    """floor(value / 2^exponent * bins), in float64 (exact for float32 values), clamped to the bins."""
    scaled = torch.ldexp(values.double(), -exponent) * bins
    return scaled.floor().long().clamp(0, bins - 1)


def feature_histogram(counts: list[int], upper: float) -> dict[str, list]:
    """One feature's output: its bins up to the last nonempty one (the max's), with their edges."""
    n = max((j + 1 for j, c in enumerate(counts) if c), default=0)
    width = upper / len(counts)
    return {"edges": [j * width for j in range(n + 1)] if n else [], "counts": counts[:n]}
