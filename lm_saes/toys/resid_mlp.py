"""Residual MLP (compressed computation; spd's resid_mlp experiments): more ReLU functions of
the inputs than the MLP has neurons.

Model. A fixed random embedding W_E [n_features, d_embed] with unit rows and W_U = W_E^T (both
buffers, never trained); ``n_layers`` residual blocks r <- r + mlp_out(act(mlp_in(r)))
(``layers.i.mlp_in``: d_embed -> d_mlp, ``layers.i.mlp_out``: d_mlp -> d_embed); out = r W_U.

Data. Feature i is on with probability ``feature_probability``, uniform in [-1, 1] when on; the
label of feature i is x_i + act(c_i x_i) (the residual plus the activation of the feature), with
c_i = 1 or, with ``label_coefficients = "random"``, uniform in [1, 2] (seeded). Loss: mean squared
error of the read-off output.

Ground truth: each input feature should be computed by its own subcomponents of the MLP; on an
input holding one feature alone, the causal importances of ``mlp_in`` should pick one
subcomponent per feature (the identity CI pattern).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from lm_saes.toys.config import ResidMLPConfig
from lm_saes.toys.tms import FeatureData, FeatureSplits, loss, metrics  # noqa: F401 (the same loss and metrics)


class MLP(nn.Module):
    def __init__(self, d_embed: int, d_mlp: int, activation: str, in_bias: bool, out_bias: bool) -> None:
        super().__init__()
        self.mlp_in = nn.Linear(d_embed, d_mlp, bias=in_bias)
        self.mlp_out = nn.Linear(d_mlp, d_embed, bias=out_bias)
        self.act = nn.ReLU() if activation == "relu" else nn.GELU()

    def forward(self, x: Float[Tensor, "batch d_embed"]) -> Float[Tensor, "batch d_embed"]:
        return self.mlp_out(self.act(self.mlp_in(x)))


class ResidMLP(nn.Module):
    def __init__(self, cfg: ResidMLPConfig) -> None:
        super().__init__()
        self.cfg = cfg
        embed = torch.randn(cfg.n_features, cfg.d_embed)
        embed /= embed.norm(dim=1, keepdim=True)
        self.register_buffer("W_E", embed)  # [n_features, d_embed], unit rows
        self.register_buffer("W_U", embed.T.clone())  # [d_embed, n_features]
        self.layers = nn.ModuleList(MLP(cfg.d_embed, cfg.d_mlp, cfg.activation, cfg.in_bias, cfg.out_bias)
                                    for _ in range(cfg.n_layers))

    def forward(self, x: Float[Tensor, "batch n_features"]) -> Float[Tensor, "batch n_features"]:
        residual = x @ self.W_E  # [batch, d_embed]
        for layer in self.layers:
            residual = residual + layer(residual)
        return residual @ self.W_U


def label_coefficients(cfg: ResidMLPConfig) -> Float[Tensor, "n_features"]:
    if cfg.label_coefficients == "ones":
        return torch.ones(cfg.n_features)
    return torch.rand(cfg.n_features, generator=torch.Generator().manual_seed(cfg.data_seed + 1)) + 1


def sample(cfg: ResidMLPConfig, n: int, generator: torch.Generator) -> FeatureData:
    values = torch.rand(n, cfg.n_features, generator=generator) * 2 - 1
    x = values * (torch.rand(n, cfg.n_features, generator=generator) < cfg.feature_probability)
    act = F.relu if cfg.activation == "relu" else F.gelu
    return FeatureData(x, x + act(x * label_coefficients(cfg)))


def make_data(cfg: ResidMLPConfig) -> FeatureSplits:
    generator = torch.Generator().manual_seed(cfg.data_seed)
    return FeatureSplits(sample(cfg, cfg.n_train, generator), sample(cfg, cfg.n_test, generator))


def identity_modules(cfg: ResidMLPConfig) -> list[str]:
    return [f"layers.{i}.mlp_in" for i in range(cfg.n_layers)]
