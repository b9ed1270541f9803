"""Synthetic activations with known features, to check that a dictionary recovers them.

In the style of Sharkey et al. (2022), "Taking features out of superposition with sparse
autoencoders": ``n_features`` random unit directions in ``d`` dimensions (n_features > d, so in
superposition); each sample switches feature i on with probability p_i (frequencies decay as a
power law, optionally correlated through shared latent groups) with a magnitude uniform in
[0, 1], and is the sum of the active features' directions times their magnitudes.

MMCS (mean max cosine similarity): for each true feature, the best cosine with any learned
decoder direction, averaged over true features. 1.0 means every feature was found exactly.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import torch
from jaxtyping import Float
from torch import Tensor


class SyntheticFeatures(NamedTuple):
    directions: Float[Tensor, "n_features d"]  # unit rows
    probabilities: Float[Tensor, "n_features"]  # firing probability of each feature
    group: Tensor  # [n_features] long: features in one group fire together more often


def make_features(
    n_features: int, d: int, mean_active: float, decay: float = 0.0, n_groups: int = 0, seed: int = 0
) -> SyntheticFeatures:
    """Random unit directions; probabilities ∝ (i+1)^-decay scaled so E[active] = mean_active."""
    generator = torch.Generator().manual_seed(seed)
    directions = torch.randn(n_features, d, generator=generator)
    directions /= directions.norm(dim=1, keepdim=True)
    weights = (torch.arange(n_features) + 1.0) ** -decay
    probabilities = (mean_active * weights / weights.sum()).clamp(max=1.0)
    group = torch.randint(max(n_groups, 1), (n_features,), generator=generator) if n_groups else torch.zeros(n_features, dtype=torch.long)
    return SyntheticFeatures(directions, probabilities, group)


def sample(
    features: SyntheticFeatures, batch: int, generator: torch.Generator, correlation: float = 0.0
) -> Float[Tensor, "batch d"]:
    """One batch: each feature on with its probability (boosted within an active group by
    ``correlation``), magnitude ~ U(0, 1), summed along the directions."""
    p = features.probabilities.expand(batch, -1)  # [batch, n_features]
    if correlation > 0:
        n_groups = int(features.group.max()) + 1
        group_on = torch.rand(batch, n_groups, generator=generator) < features.probabilities.mean() * 4
        p = torch.where(group_on[:, features.group], (p + correlation).clamp(max=1.0), p)
    on = torch.rand(p.shape, generator=generator) < p
    magnitude = torch.rand(p.shape, generator=generator)
    return (on * magnitude) @ features.directions


def batches(features: SyntheticFeatures, batch: int, seed: int = 0, correlation: float = 0.0) -> Iterator[Tensor]:
    """An endless, seeded stream of synthetic batches."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        yield sample(features, batch, generator, correlation)


def mmcs(learned: Float[Tensor, "m d"], true: Float[Tensor, "n d"]) -> float:
    """Mean over true features of the max cosine similarity with any learned direction."""
    learned = learned / learned.norm(dim=1, keepdim=True)
    true = true / true.norm(dim=1, keepdim=True)
    return float((true @ learned.T).max(dim=1).values.mean())
