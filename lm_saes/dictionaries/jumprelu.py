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
from lm_saes.dictionaries.parallel import SINGLE_DEVICE, Collectives
from lm_saes.dictionaries.base import (
    Dictionary, LossOutput, Stack, TrainingContext, fired_features, reconstruction_mse, stacked_bias,
    stacked_decode, stacked_pre_acts,
)

UNFITTED_THRESHOLD = 1e-3  # until init_from_data fits the thresholds (a loaded dictionary has its own)
MIN_THRESHOLD = 1e-6


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
    pre: Float[Tensor, "batch d_sae"], threshold: Float[Tensor, "d_sae"], bandwidth: float | Tensor
) -> Float[Tensor, "batch d_sae"]:
    """pre * H(pre - threshold), with the straight-through gradient wrt threshold."""
    return _JumpReLU.apply(pre, threshold, bandwidth)


def step(
    pre: Float[Tensor, "batch d_sae"], threshold: Float[Tensor, "d_sae"], bandwidth: float | Tensor
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
        start = cfg.initial_threshold if cfg.initial_threshold is not None else UNFITTED_THRESHOLD
        self.log_threshold = nn.Parameter(torch.full((self.d_sae,), math.log(start)))

    @torch.no_grad()
    def init_activation(self, x: Float[Tensor, "batch d_in"]) -> None:
        """Thresholds fitted to the data unless ``initial_threshold`` is set: each feature starts
        firing on a fraction min(1/2, d_in / d_sae) of the batch (so about d_in features per token),
        its threshold the matching quantile of its pre-activations over the whole batch (every
        data-parallel rank's rows). A threshold in log space moves by about the learning rate per Adam step, so a fixed
        tiny start (every feature firing like a ReLU) takes thousands of steps to become sparse."""
        if self.cfg.initial_threshold is not None:
            return
        pre = self.comm.batch_rows(self.pre_acts(x))  # [batch, d_sae]: the whole batch, this rank's features
        fraction = min(0.5, self.d_in / self.d_sae)
        n_firing = max(1, round(fraction * len(pre)))
        # Midway between the n-th and (n + 1)-th largest: n_firing pass, and no token sits on the edge.
        below = pre.kthvalue(max(1, len(pre) - n_firing), dim=0).values  # [d_sae]
        above = pre.kthvalue(len(pre) - n_firing + 1, dim=0).values
        threshold = ((below + above) / 2).clamp(min=MIN_THRESHOLD)
        self.log_threshold.copy_(threshold.log())

    @torch.no_grad()
    def scale_start(self, c: float) -> None:
        """Pre-activations shrink by c (the encoder); so do the thresholds they are compared with."""
        super().scale_start(c)
        self.log_threshold.add_(math.log(c))

    @property
    def threshold(self) -> Float[Tensor, "d_sae"]:
        return self.log_threshold.exp()

    def activate(self, pre: Float[Tensor, "batch d_sae"]) -> Float[Tensor, "batch d_sae"]:
        return jumprelu(pre, self.threshold, self.cfg.bandwidth)

    def stack_key(self) -> tuple:
        return (*super().stack_key(), self.cfg.sparsity_loss, self.cfg.pre_act_coefficient > 0)

    @classmethod
    def stacked_loss(
        cls, st: Stack, x: Float[Tensor, "M batch d_in"], target: Float[Tensor, "M batch d_out"],
        ctxs: list[TrainingContext],
    ) -> LossOutput:
        cfg, comm, W_dec = st.members[0].cfg, st.comm, st.tensors["W_dec"]
        pre = stacked_pre_acts(st, x, stacked_bias(st))  # [M, batch, d_sae]
        threshold = st.tensors["log_threshold"].exp().unsqueeze(1)  # [M, 1, d_sae]
        bandwidth = _broadcast(st.knob("bandwidth", pre))
        acts = jumprelu(pre, threshold, bandwidth)
        mse = reconstruction_mse(stacked_decode(st, acts), target)  # [M]
        l0 = comm.reduce(step(pre, threshold, bandwidth).sum(-1)).mean(-1)
        terms = {"mse": mse.detach(), "l0": l0.detach()}
        if cfg.sparsity_loss == "step":  # shared by the stack (stack_key)
            sparsity = l0
        else:
            sparsity = tanh_penalty(acts, W_dec, _broadcast(st.knob("tanh_scale", pre)), comm)
            terms["tanh_l0"] = sparsity.detach()
        weight = st.per_member([m.cfg.l0_coefficient * c.sparsity_scale for m, c in zip(st.members, ctxs)], mse)
        loss = mse + weight * sparsity
        if cfg.pre_act_coefficient > 0:
            pre_act = pre_act_loss(pre, threshold, W_dec, comm)
            loss = loss + st.knob("pre_act_coefficient", mse) * pre_act
            terms["pre_act"] = pre_act.detach()
        return LossOutput(loss, terms, fired_features(acts))


def _broadcast(knob: float | Tensor) -> float | Tensor:
    """A per-member [M] knob shaped [M, 1, 1], to meet [M, batch, d_sae] tensors."""
    return knob.view(-1, 1, 1) if isinstance(knob, Tensor) else knob


def tanh_penalty(
    acts: Float[Tensor, "... batch d_sae"], W_dec: Float[Tensor, "... d_sae d_out"], scale: float | Tensor,
    comm: Collectives = SINGLE_DEVICE,
) -> Float[Tensor, "..."]:
    """mean_batch sum_i tanh(scale |f_i| ||W_dec,i||): a smooth L0 (about 1 per strongly active
    feature) whose gradient reaches the encoder through the activations (Anthropic, January 2025)."""
    return comm.reduce(torch.tanh(scale * acts.abs() * W_dec.norm(dim=-1).unsqueeze(-2)).sum(-1)).mean(-1)


def pre_act_loss(
    pre: Float[Tensor, "... batch d_sae"], threshold: Float[Tensor, "... 1 d_sae"],
    W_dec: Float[Tensor, "... d_sae d_out"], comm: Collectives = SINGLE_DEVICE,
) -> Float[Tensor, "..."]:
    """mean_batch sum_i ReLU(theta_i - pre_i) ||W_dec,i||: pulls pre-activations below their
    threshold up towards it, so features that stopped firing come back (Anthropic, January 2025)."""
    return comm.reduce((torch.relu(threshold - pre) * W_dec.norm(dim=-1).unsqueeze(-2)).sum(-1)).mean(-1)
