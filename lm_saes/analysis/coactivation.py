"""Which features fire together: over the analyzed tokens, the number of tokens on which each pair
of features both fire (a subcomponent fires where its causal importance exceeds the threshold).

For feature i and another feature j that fired together ``n_ij`` times, with ``n_i`` and ``n_j``
the tokens each fired on:

- ``p`` = n_ij / n_i: the fraction of i's firing tokens on which j fires too, P(j | i);
- ``jaccard`` = n_ij / (n_i + n_j - n_ij): the overlap of their firing sets.

The counts are one dense [n_features, n_features] matrix (float64, exact to 2^53 tokens), so they are
kept only while ``n_features <= MAX_FEATURES``; above that no co-activation is stored.
"""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float
from torch import Tensor

MAX_FEATURES = 4096  # a dense count matrix of 4096^2 float64 is 128 MiB
TOP = 8  # co-activating features stored per feature


class CoFiring:
    """Running co-firing counts; ``update`` with each batch's firing pattern."""

    def __init__(self, n_features: int, device: torch.device) -> None:
        self.counts: Float[Tensor, "n n"] = torch.zeros(n_features, n_features, dtype=torch.float64, device=device)

    def update(self, fired: Bool[Tensor, "tokens n"]) -> None:
        f = fired.to(torch.float64)
        self.counts += f.T @ f  # [n, n]: tokens on which both fire; the diagonal: each one's own count


def top_coactivations(counts: Float[Tensor, "n n"], top: int = TOP) -> list[list[dict]]:
    """For each feature, the ``top`` others that fired with it most often (ties: lower index first),
    each with ``count``, ``p`` = P(other | this) and ``jaccard`` (module docstring); [] for a
    feature that never fired."""
    counts = counts.cpu()
    n = counts.diagonal().clone()  # [n]: tokens each feature fired on
    together = counts.clone()
    together.fill_diagonal_(0)
    values, indices = together.sort(dim=1, descending=True, stable=True)  # [n, n]
    values, indices = values[:, :top], indices[:, :top]
    out = []
    for i in range(len(n)):
        row = []
        for count, j in zip(values[i].tolist(), indices[i].tolist()):
            if count <= 0:
                break
            row.append({"index": j, "count": int(count), "p": count / float(n[i]),
                        "jaccard": count / float(n[i] + n[j] - count)})
        out.append(row)
    return out
