"""Toy model of superposition (Elhage et al. 2022): n_features sparse features squeezed through
n_hidden < n_features dimensions and read back out.

Model. h = W1 x (``linear1``, no bias), then ``n_hidden_layers`` fixed identity maps
(``hidden_layers.i``: nn.Linear(n_hidden, n_hidden) set to the identity and never trained),
then y = ReLU(W2 h + b) (``linear2``). Tied: W2 = W1^T (``linear2``'s weight is a view of
``linear1``'s, refreshed at every forward, so both remain nn.Linear modules).

Data. Each feature is on independently with probability ``feature_probability``, with a value
uniform in [0, 1] (spd's "at least zero active"); the label is the input. Loss: mean squared error.

Ground truth: feature i is column i of W1 (its hidden direction) and row i of W2 (its readout);
a good decomposition of either matrix has one rank-one subcomponent per feature.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from lm_saes.toys.config import TMSConfig

SINGLE_FEATURE_MAGNITUDE = 0.75  # value of the one active feature in the identity-CI probe inputs (spd's)


class FeatureData(NamedTuple):
    """A set of examples: ``features`` [n, n_features] (the input) and ``labels`` [n, n_out]."""

    features: Float[Tensor, "n n_features"]
    labels: Float[Tensor, "n n_out"]


class FeatureSplits(NamedTuple):
    train: FeatureData
    test: FeatureData


class TMSModel(nn.Module):
    def __init__(self, cfg: TMSConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.linear1 = nn.Linear(cfg.n_features, cfg.n_hidden, bias=False)
        self.hidden_layers = nn.ModuleList(nn.Linear(cfg.n_hidden, cfg.n_hidden, bias=False)
                                           for _ in range(cfg.n_hidden_layers))
        for layer in self.hidden_layers:  # fixed identities
            nn.init.eye_(layer.weight)
            layer.weight.requires_grad_(False)
        self.linear2 = nn.Linear(cfg.n_hidden, cfg.n_features, bias=True)
        if cfg.init_bias_to_zero:
            nn.init.zeros_(self.linear2.bias)
        if cfg.tied:
            del self.linear2.weight  # a view of linear1's weight from now on (not in the state dict)
            self.tie_weights()

    def tie_weights(self) -> None:
        if self.cfg.tied:
            self.linear2.weight = self.linear1.weight.T  # [n_features, n_hidden]

    def forward(self, x: Float[Tensor, "batch n_features"]) -> Float[Tensor, "batch n_features"]:
        self.tie_weights()
        h = self.linear1(x)  # [batch, n_hidden]
        for layer in self.hidden_layers:
            h = layer(h)
        return F.relu(self.linear2(h))


def sample_features(n_features: int, probability: float, n: int, generator: torch.Generator) -> Tensor:
    """[n, n_features]: each feature on with ``probability``, uniform in [0, 1] when on."""
    values = torch.rand(n, n_features, generator=generator)
    on = torch.rand(n, n_features, generator=generator) < probability
    return values * on


def sample(cfg: TMSConfig, n: int, generator: torch.Generator) -> FeatureData:
    x = sample_features(cfg.n_features, cfg.feature_probability, n, generator)
    return FeatureData(x, x)


def make_data(cfg: TMSConfig) -> FeatureSplits:
    """Fixed train and test sets (for metrics and the LLC; training draws fresh batches)."""
    generator = torch.Generator().manual_seed(cfg.data_seed)
    return FeatureSplits(sample(cfg, cfg.n_train, generator), sample(cfg, cfg.n_test, generator))


def loss(model: nn.Module, batch: FeatureData) -> Float[Tensor, ""]:
    return F.mse_loss(model(batch.features), batch.labels)


@torch.no_grad()
def metrics(model: nn.Module, data: FeatureData) -> dict[str, float]:
    return {"loss": float(loss(model, data))}


def feature_axes(cfg: TMSConfig) -> dict[str, str]:
    """Which axis of each matrix indexes the true features: W1's input, W2's output."""
    return {"linear1": "in", "linear2": "out"}


def identity_modules(cfg: TMSConfig) -> list[str]:
    """Matrices whose causal importances should pick one subcomponent per feature."""
    return ["linear1", "linear2"]


def single_features(n_features: int) -> Float[Tensor, "n_features n_features"]:
    """Every feature alone, at SINGLE_FEATURE_MAGNITUDE: the identity-CI probe inputs."""
    return torch.eye(n_features) * SINGLE_FEATURE_MAGNITUDE
