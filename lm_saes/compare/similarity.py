"""How alike two sets of directions are: each one's best match in the other, MMCS both ways.

For two sets A [n, d] and B [m, d] (decoder directions, or the subcomponents of one decomposed
matrix), with S [n, m] their cosine similarities:

- A -> B: for each row i of A, its best match argmax_j S_ij and the cosine there; MMCS(A -> B) is
  the mean of those cosines over A (Sharkey et al. 2022's mean max cosine similarity, with B in
  the place of the true features). B -> A is the same over the columns. A run compared with
  itself gives 1 both ways; a larger dictionary against a smaller one usually finds most of the
  small one's directions (high MMCS small -> large) but not the other way round.
- the histogram of the best-match cosines over ``bins`` equal bins of [-1, 1].

An SPD subcomponent c of a matrix is the rank-one matrix V[:, c] U[c, :]. Its similarity with
another is the cosine of the two matrices flattened, which factorises:
<v u^T, v' u'^T>_F = (v . v')(u . u'), so cos = cos(v, v') cos(u, u') (``rank_one_similarities``;
``flattened_similarities`` is its slow twin on the materialised matrices). U and V alone are
compared by the absolute cosine, since the subcomponent is unchanged when both change sign.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from lm_saes.evaluation.metrics import best_matches, cosine_similarities

HISTOGRAM_RANGE = (-1.0, 1.0)


class Matches(NamedTuple):
    """One direction of a comparison: every row of one run matched in the other."""

    mmcs: float  # mean over the rows of their best cosine
    best: list[int]  # each row's best match (an index into the other run's full set)
    cosines: list[float]  # each row's best cosine
    histogram: list[int]  # counts of ``cosines`` over equal bins of [-1, 1]

    def as_json(self, index: list[int]) -> dict:
        """The record, each row named by its index in its own run's full set."""
        return {"mmcs": self.mmcs, "histogram": self.histogram,
                "matches": [{"index": i, "best": j, "cosine": c} for i, j, c in zip(index, self.best, self.cosines)]}


class Comparison(NamedTuple):
    a_to_b: Matches
    b_to_a: Matches
    a_index: list[int]  # the rows of A compared (indices into A's full set)
    b_index: list[int]

    def as_json(self) -> dict:
        return {"n_a": len(self.a_index), "n_b": len(self.b_index), "a_to_b": self.a_to_b.as_json(self.a_index),
                "b_to_a": self.b_to_a.as_json(self.b_index)}


def rank_one_similarities(V_a: Float[Tensor, "d_in n"], U_a: Float[Tensor, "n d_out"],
                          V_b: Float[Tensor, "d_in m"], U_b: Float[Tensor, "m d_out"]) -> Float[Tensor, "n m"]:
    """cos(V_a[:, i] U_a[i, :], V_b[:, j] U_b[j, :]) of the flattened rank-one matrices, as the
    product of the factors' cosines."""
    return cosine_similarities(V_a.T, V_b.T) * cosine_similarities(U_a, U_b)


def flattened_similarities(V_a: Tensor, U_a: Tensor, V_b: Tensor, U_b: Tensor) -> Float[Tensor, "n m"]:
    """The slow twin of ``rank_one_similarities``: every matrix materialised and flattened."""
    flat_a = (V_a.T[:, :, None] * U_a[:, None, :]).flatten(1)  # [n, d_in * d_out]
    flat_b = (V_b.T[:, :, None] * U_b[:, None, :]).flatten(1)  # [m, d_in * d_out]
    return cosine_similarities(flat_a, flat_b)


def factor_similarities(a: Float[Tensor, "n d"], b: Float[Tensor, "m d"]) -> Float[Tensor, "n m"]:
    """|cos| of one factor (U rows or V columns, given as rows): its sign is not the subcomponent's."""
    return cosine_similarities(a, b).abs()


def compare(similarities: Float[Tensor, "n m"], a_index: list[int], b_index: list[int], bins: int) -> Comparison:
    """Both directions of a comparison from the similarities of A's rows (``a_index`` in A's full
    set) with B's (``b_index``)."""
    return Comparison(_matches(similarities, b_index, bins), _matches(similarities.T, a_index, bins), a_index, b_index)


def _matches(similarities: Float[Tensor, "n m"], other_index: list[int], bins: int) -> Matches:
    if similarities.shape[0] == 0:
        return Matches(float("nan"), [], [], [0] * bins)
    if similarities.shape[1] == 0:
        return Matches(float("nan"), [-1] * similarities.shape[0], [float("nan")] * similarities.shape[0], [0] * bins)
    best = best_matches(similarities)
    counts = torch.histc(best.cosines.float().cpu(), bins=bins, min=HISTOGRAM_RANGE[0], max=HISTOGRAM_RANGE[1])
    return Matches(float(best.cosines.mean()), [other_index[j] for j in best.indices.tolist()],
                   best.cosines.tolist(), [int(c) for c in counts.tolist()])


def kept(keep: Bool[Tensor, "n"] | None, n: int) -> list[int]:
    """The indices ``keep`` marks (all ``n`` when None)."""
    return list(range(n)) if keep is None else torch.nonzero(keep.cpu()).flatten().tolist()


def histogram_edges(bins: int) -> list[float]:
    """The bin edges of every histogram of a comparison."""
    return torch.linspace(*HISTOGRAM_RANGE, bins + 1).tolist()
