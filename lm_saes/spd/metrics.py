"""How well a decomposition matches a toy's ground truth, and how sparse it is: pure functions.

- ``feature_match``: for a matrix whose input (or output) axis indexes the true features, feature
  i's true piece is row i of W [d_in, d_out] (or column i); subcomponent c's piece of it is
  V[i, c] U[c, :] (or U[c, i] V[:, c]). MMCS is the mean over features of the largest cosine
  similarity between the true piece and a live subcomponent's piece; ML2R the mean ratio of the
  best-matching piece's norm to the true piece's norm (Bushnaq et al. 2025; 1 is perfect).
- ``identity_ci_error``: the causal importances [n_features, C] of inputs holding one feature
  each, columns assigned to features to best match an identity (Hungarian); the count of
  entries off the pattern by more than ``tolerance`` (an assigned entry below 1 - tolerance, any
  other above tolerance): spd's measure, 0 when each feature lights exactly its own subcomponent.
- CI-L0: subcomponents above the threshold per input, averaged; alive: above it on some input.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from jaxtyping import Bool, Float
from scipy.optimize import linear_sum_assignment
from torch import Tensor


class FeatureMatch(NamedTuple):
    mmcs: float  # mean over true features of the best cosine similarity
    ml2r: float  # mean over true features of |best piece| / |true piece|
    best: list[int]  # the best subcomponent of each feature
    cosines: list[float]  # each feature's best cosine similarity


def feature_pieces(V: Float[Tensor, "d_in C"], U: Float[Tensor, "C d_out"], axis: str) -> Float[Tensor, "C f d"]:
    """Each subcomponent's piece of each feature: V[i, c] U[c, :] ("in") or U[c, i] V[:, c] ("out")."""
    if axis == "in":
        return V.T[:, :, None] * U[:, None, :]  # [C, d_in, d_out]
    return U[:, :, None] * V.T[:, None, :]  # [C, d_out, d_in]


def true_pieces(W: Float[Tensor, "d_in d_out"], axis: str) -> Float[Tensor, "f d"]:
    """Rows of W (features on the input axis) or its columns (on the output axis)."""
    return W if axis == "in" else W.T


def feature_match(V: Tensor, U: Tensor, W: Tensor, axis: str, alive: Bool[Tensor, "C"]) -> FeatureMatch:
    pieces = feature_pieces(V, U, axis)[alive]  # [live, f, d]
    truth = true_pieces(W, axis)  # [f, d]
    if len(pieces) == 0:
        return FeatureMatch(0.0, 0.0, [], [0.0] * len(truth))
    norms = pieces.norm(dim=-1)  # [live, f]
    cosines = (pieces * truth).sum(-1) / (norms * truth.norm(dim=-1)).clamp_min(1e-30)  # [live, f]
    best_cos, best = cosines.max(dim=0)  # [f]
    ratios = norms.gather(0, best[None])[0] / truth.norm(dim=-1)
    live = torch.nonzero(alive).flatten()
    return FeatureMatch(float(best_cos.mean()), float(ratios.mean()), live[best].tolist(), best_cos.tolist())


def identity_ci_error(ci: Float[Tensor, "f C"], tolerance: float = 0.1) -> int:
    """Entries of the single-feature causal importances that break the identity pattern."""
    ci = ci.detach().float().cpu()
    rows, cols = linear_sum_assignment(ci.numpy(), maximize=True)  # each feature its own subcomponent
    assigned = torch.zeros_like(ci, dtype=torch.bool)
    assigned[torch.as_tensor(rows), torch.as_tensor(cols)] = True
    missing = int((ci[assigned] < 1 - tolerance).sum()) + (ci.shape[0] - len(rows))  # features left without one
    extra = int((ci[~assigned] > tolerance).sum())
    return missing + extra


def alive_components(max_ci: Float[Tensor, "C"], threshold: float) -> Bool[Tensor, "C"]:
    """Subcomponents whose causal importance exceeded ``threshold`` on some input."""
    return max_ci > threshold
