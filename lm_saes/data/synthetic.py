"""Synthetic activations with known features, to check that a dictionary recovers them.

In the style of Sharkey et al. (2022), "Taking features out of superposition with sparse
autoencoders": ``n_features`` random unit directions in ``d`` dimensions (n_features > d, so in
superposition); each sample switches feature i on with probability p_i (frequencies decay as a
power law, optionally correlated through shared groups) with a magnitude uniform in [low, high],
and is the sum of the active features' directions times their magnitudes, plus optional
Gaussian noise. ``lm-saes generate`` writes such samples as an ordinary 1d cache
(``[synthetic]`` in its config, lm_saes.activations.synthetic); the metrics that compare a
dictionary with the truth (MMCS, features recovered) are in lm_saes.evaluation.metrics.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import torch
from jaxtyping import Float, Int
from torch import Tensor

from lm_saes.config import SyntheticConfig


class SyntheticFeatures(NamedTuple):
    directions: Float[Tensor, "n_features d"]  # unit rows
    probabilities: Float[Tensor, "n_features"]  # firing probability of each feature
    group: Int[Tensor, "n_features"]  # features in one group fire together more often


class SampleSettings(NamedTuple):
    """How samples are drawn from the features (beyond their probabilities)."""

    correlation: float = 0.0  # added to p_i on samples where i's group is on
    magnitude: tuple[float, float] = (0.0, 1.0)  # an active feature's magnitude ~ U(low, high)
    noise: float = 0.0  # std of Gaussian noise on every coordinate


def feature_seed(seed: int) -> int:
    """The generator seed of the true features for ``seed``: mixed, so that the features are never
    the first draws of ``torch.manual_seed(seed)``. A dictionary initialised after
    ``torch.manual_seed(0)`` (training's default seed) draws ``randn(d_sae, d)`` from exactly that
    stream: with the features drawn from it too, its first rows would be the answer before training."""
    return (seed + 1) * 0x9E3779B97F4A7C15 % 2**63


def make_features(
    n_features: int, d: int, mean_active: float | None = None, decay: float = 0.0, n_groups: int = 0,
    seed: int = 0, top_probability: float | None = None,
) -> SyntheticFeatures:
    """Random unit directions; probabilities ∝ (i+1)^-decay, scaled so E[active] = mean_active
    (or so the most frequent feature fires with ``top_probability``)."""
    generator = torch.Generator().manual_seed(feature_seed(seed))
    directions = torch.randn(n_features, d, generator=generator)
    directions /= directions.norm(dim=1, keepdim=True)
    weights = (torch.arange(n_features) + 1.0) ** -decay
    if top_probability is not None:
        probabilities = top_probability * weights / weights[0]
    else:
        probabilities = (mean_active * weights / weights.sum()).clamp(max=1.0)
    group = torch.randint(max(n_groups, 1), (n_features,), generator=generator) if n_groups else torch.zeros(n_features, dtype=torch.long)
    return SyntheticFeatures(directions, probabilities, group)


def features_from_config(cfg: SyntheticConfig) -> SyntheticFeatures:
    return make_features(cfg.n_features, cfg.d_model, cfg.mean_active, cfg.decay, cfg.n_groups, cfg.seed,
                         top_probability=cfg.feature_probability)


def settings_from_config(cfg: SyntheticConfig) -> SampleSettings:
    return SampleSettings(cfg.correlation, cfg.magnitude, cfg.noise)


def sample(
    features: SyntheticFeatures, batch: int, generator: torch.Generator, correlation: float = 0.0,
    settings: SampleSettings | None = None,
) -> Float[Tensor, "batch d"]:
    """One batch: each feature on with its probability (boosted within an active group by the
    correlation), magnitude ~ U(low, high), summed along the directions, plus noise."""
    settings = settings or SampleSettings(correlation=correlation)
    p = features.probabilities.expand(batch, -1)  # [batch, n_features]
    if settings.correlation > 0:
        n_groups = int(features.group.max()) + 1
        group_on = torch.rand(batch, n_groups, generator=generator) < features.probabilities.mean() * 4
        p = torch.where(group_on[:, features.group], (p + settings.correlation).clamp(max=1.0), p)
    on = torch.rand(p.shape, generator=generator) < p
    low, high = settings.magnitude
    magnitude = low + (high - low) * torch.rand(p.shape, generator=generator)
    x = (on * magnitude) @ features.directions
    if settings.noise > 0:
        x = x + settings.noise * torch.randn(x.shape, generator=generator)
    return x


def batches(
    features: SyntheticFeatures, batch: int, seed: int = 0, correlation: float = 0.0,
    settings: SampleSettings | None = None,
) -> Iterator[Tensor]:
    """An endless, seeded stream of synthetic batches."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        yield sample(features, batch, generator, correlation, settings)
