"""JumpReLU SAE (Rajamanoharan et al. 2024, "Jumping Ahead: Improving Reconstruction Fidelity...").

    acts = pre * H(pre - theta),  theta = exp(log_threshold) per feature
    loss = MSE + l0_coefficient * sparsity_scale * mean_batch sum_i H(pre_i - theta_i)

H has no useful derivative, so theta learns from straight-through pseudo-gradients with the
rectangle kernel K(u) = 1{|u| < 1/2} of bandwidth eps:
    d JumpReLU / d theta = -(theta / eps) K((pre - theta) / eps),  d JumpReLU / d pre = H(pre - theta)
    d H / d theta        = -(1 / eps) K((pre - theta) / eps),      d H / d pre = 0
Thresholds compare against pre-activations, which folding the scales leaves unchanged.
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Float
from torch import Tensor, nn

from lm_saes.config import JumpReLUConfig
from lm_saes.dictionaries.base import (
    Dictionary, LossOutput, TrainingContext, fired_features, mean_l0, reconstruction_mse,
)


def rectangle(u: Tensor) -> Tensor:
    """K(u) = 1{|u| < 1/2}."""
    return (u.abs() < 0.5).to(u.dtype)


class _JumpReLU(torch.autograd.Function):
    generate_vmap_rule = True  # torch.func transforms (vmap over stacked chains in lm_saes.llc) work through it

    @staticmethod
    def forward(pre: Tensor, threshold: Tensor, bandwidth: float) -> Tensor:
        return pre * (pre > threshold)

    @staticmethod
    def setup_context(ctx, inputs: tuple[Tensor, Tensor, float], output: Tensor) -> None:
        pre, threshold, ctx.bandwidth = inputs
        ctx.save_for_backward(pre, threshold)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor, None]:
        pre, threshold = ctx.saved_tensors
        eps = ctx.bandwidth
        grad_threshold = -(threshold / eps) * rectangle((pre - threshold) / eps) * grad
        return grad * (pre > threshold), grad_threshold.sum_to_size(threshold.shape), None


class _Step(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(pre: Tensor, threshold: Tensor, bandwidth: float) -> Tensor:
        return (pre > threshold).to(pre.dtype)

    @staticmethod
    def setup_context(ctx, inputs: tuple[Tensor, Tensor, float], output: Tensor) -> None:
        pre, threshold, ctx.bandwidth = inputs
        ctx.save_for_backward(pre, threshold)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor, None]:
        pre, threshold = ctx.saved_tensors
        eps = ctx.bandwidth
        grad_threshold = -(1 / eps) * rectangle((pre - threshold) / eps) * grad
        return torch.zeros_like(pre), grad_threshold.sum_to_size(threshold.shape), None


def jumprelu(
    pre: Float[Tensor, "batch d_sae"], threshold: Float[Tensor, "d_sae"], bandwidth: float
) -> Float[Tensor, "batch d_sae"]:
    """pre * H(pre - threshold), with the straight-through gradient wrt threshold."""
    return _JumpReLU.apply(pre, threshold, bandwidth)


def step(
    pre: Float[Tensor, "batch d_sae"], threshold: Float[Tensor, "d_sae"], bandwidth: float
) -> Float[Tensor, "batch d_sae"]:
    """H(pre - threshold), with the straight-through gradient wrt threshold."""
    return _Step.apply(pre, threshold, bandwidth)


class JumpReLUDictionary(Dictionary):
    kind = "jumprelu"
    unit_norm_decoder = True
    cfg: JumpReLUConfig
    feature_dims = {**Dictionary.feature_dims, "log_threshold": 0}

    def __init__(self, cfg: JumpReLUConfig, d_in: int, d_out: int, transcoder: bool = False) -> None:
        super().__init__(cfg, d_in, d_out, transcoder)
        self.log_threshold = nn.Parameter(torch.full((self.d_sae,), math.log(cfg.initial_threshold)))

    @property
    def threshold(self) -> Float[Tensor, "d_sae"]:
        return self.log_threshold.exp()

    def activate(self, pre: Float[Tensor, "batch d_sae"]) -> Float[Tensor, "batch d_sae"]:
        return jumprelu(pre, self.threshold, self.cfg.bandwidth)

    def loss(
        self, x: Float[Tensor, "batch d_in"], target: Float[Tensor, "batch d_out"], ctx: TrainingContext
    ) -> LossOutput:
        pre = self.pre_acts(x)
        acts = self.activate(pre)
        mse = reconstruction_mse(self.decode(acts), target)
        l0 = self.comm.reduce(step(pre, self.threshold, self.cfg.bandwidth).sum(-1)).mean()
        loss = mse + self.cfg.l0_coefficient * ctx.sparsity_scale * l0
        return LossOutput(loss, {"mse": mse.detach(), "l0": l0.detach()}, fired_features(acts))
