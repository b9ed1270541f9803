"""TopK SAE with the AuxK loss (Gao et al. 2024, "Scaling and evaluating sparse autoencoders").

    acts = ReLU of each token's k largest pre-activations, zero elsewhere
    loss = MSE + aux_coefficient * AuxK

AuxK lets the dead features (ctx.dead_mask) explain the residual e = target - recon: the
top-min(aux_k, n_dead) dead pre-activations (ReLU'd) reconstruct e_hat = aux_acts W_dec (no
b_dec), and AuxK = ||e - e_hat||^2 normalised by the residual's variance. Its gradient reaches
only the dead features, through their activations; e itself is a constant.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor

from lm_saes.config import TopKConfig
from lm_saes.dictionaries.base import (
    Dictionary, DictionaryOutput, LossOutput, TrainingContext, fired_features, mean_l0, reconstruction_mse,
)
from lm_saes.dictionaries.parallel import SINGLE_DEVICE, Collectives


def topk_select(
    pre: Float[Tensor, "batch d_sae"], k: int, comm: Collectives = SINGLE_DEVICE
) -> tuple[Float[Tensor, "batch k"], Int[Tensor, "batch k"]]:
    """Each row's k largest entries, ReLU'd, and their feature indices.

    Under tensor parallelism ``pre`` is this rank's feature shard: each shard offers its own
    top k, and keeps those at or above the k-th largest of all the shards' offers (the same
    selection as on one device, up to exact ties at the k-th value); the others become 0.
    """
    values, indices = pre.topk(min(k, pre.shape[-1]), dim=-1)  # [batch, k]
    if comm.tp_size > 1:
        kth = comm.kth_largest(values, k)  # [batch, 1]
        values = torch.where(values >= kth, values, torch.zeros_like(values))
    return torch.relu(values), indices


def topk_activation(
    pre: Float[Tensor, "batch d_sae"], k: int, comm: Collectives = SINGLE_DEVICE
) -> Float[Tensor, "batch d_sae"]:
    """Each row's k largest entries, ReLU'd, kept where they are; zeros elsewhere."""
    values, indices = topk_select(pre, k, comm)
    return torch.zeros_like(pre).scatter(-1, indices, values)


def sparse_decode(
    values: Float[Tensor, "batch k"], indices: Int[Tensor, "batch k"], W_dec: Float[Tensor, "d_sae d_out"]
) -> Float[Tensor, "batch d_out"]:
    """sum_j values[b, j] W_dec[indices[b, j]]: the decoder product of k-sparse activations in
    O(batch k d_out) instead of O(batch d_sae d_out). Its eager twin is a dense scatter + matmul."""
    return F.embedding_bag(indices, W_dec, per_sample_weights=values.to(W_dec.dtype), mode="sum")


def auxk_loss(
    pre: Float[Tensor, "batch d_sae"],
    residual: Float[Tensor, "batch d_out"],
    W_dec: Float[Tensor, "d_sae d_out"],
    dead_mask: Bool[Tensor, "d_sae"] | None,
    aux_k: int,
    comm: Collectives = SINGLE_DEVICE,
) -> Float[Tensor, ""]:
    """mean_batch ||e - e_hat||^2 / mean_batch ||e - mean_batch e||^2, or 0 if no feature is dead.

    The means run over the whole batch, across data-parallel ranks (the residual is a constant,
    so these are plain reductions). On one feature shard only the dead columns are read and
    decoded; across tensor-parallel shards (unequal dead counts) the masked dense twin runs."""
    n_dead = 0 if dead_mask is None else int(comm.feature_sum(dead_mask.sum()))
    if n_dead == 0:
        return pre.new_zeros(())
    residual = residual.detach()
    if comm.tp_size == 1:
        dead = dead_mask.nonzero().squeeze(1)  # [n_dead]
        values, picked = pre.index_select(1, dead).topk(min(aux_k, n_dead), dim=-1)  # [batch, aux_k]
        e_hat = sparse_decode(torch.relu(values), dead[picked], W_dec)
    else:
        aux_acts = topk_activation(pre.masked_fill(~dead_mask, float("-inf")), min(aux_k, n_dead), comm)
        e_hat = comm.reduce(aux_acts @ W_dec)
    error = reconstruction_mse(e_hat, residual)
    mean = comm.batch_mean(residual.mean(0))
    variance = comm.batch_mean((residual - mean).pow(2).sum(-1).mean())
    # A residual constant over the batch (e.g. one token) has no variance to explain: the loss is 0.
    has_variance = variance > 0
    return torch.where(has_variance, error / torch.where(has_variance, variance, 1.0), 0.0)


class TopKDictionary(Dictionary):
    kind = "topk"
    unit_norm_decoder = True
    cfg: TopKConfig

    sparse_decode = True  # False: the dense scatter + matmul twin (same outputs and gradients)

    def activate(self, pre: Float[Tensor, "batch d_sae"]) -> Float[Tensor, "batch d_sae"]:
        return topk_activation(pre, self.cfg.k, self.comm)

    @torch.no_grad()
    def init_activation(self, x: Float[Tensor, "batch d_in"]) -> None:
        """Every latent starts with the same chance of being chosen: ``b_enc`` shifts each latent's
        pre-activations so that its (1 - k / d_sae) quantile over the batch (every data-parallel
        rank's rows) is the same for all, so each would be among a token's top k about k / d_sae of
        the time. From a random start some latents point where the data never goes and are never
        chosen; they die in the first steps, and in a short run AuxK cannot bring them back (on the
        quick start's cache: 59% dead without this, 4% with it)."""
        pre = self.comm.batch_rows(self.pre_acts(x))  # [batch, d_sae] (this rank's features)
        if len(pre) < 2:
            return
        n_chosen = min(len(pre) - 1, max(1, round(len(pre) * self.cfg.k / self.d_sae)))
        # Midway between each latent's n-th and (n + 1)-th largest, so that no token of two latents
        # lands on the same value (ties would make the selection depend on the float order).
        nth = pre.kthvalue(len(pre) - n_chosen + 1, dim=0).values  # [d_sae]
        next_ = pre.kthvalue(len(pre) - n_chosen, dim=0).values
        quantile = (nth + next_) / 2
        common = self.comm.feature_sum(quantile.sum()) / self.d_sae  # their mean over every shard
        self.b_enc.sub_(quantile - common)

    def sparse_forward(
        self, x: Float[Tensor, "batch d_in"]
    ) -> tuple[Float[Tensor, "batch d_sae"], Float[Tensor, "batch k"], Int[Tensor, "batch k"], Float[Tensor, "batch d_out"]]:
        """(pre, values, indices, recon) without the dense [batch, d_sae] activations."""
        pre = self.pre_acts(x)
        values, indices = topk_select(pre, self.cfg.k, self.comm)  # [batch, k] each
        recon = self.comm.reduce(sparse_decode(values, indices, self.W_dec)) + self.b_dec
        return pre, values, indices, recon

    def forward(self, x: Float[Tensor, "batch d_in"]) -> DictionaryOutput:
        if not self.sparse_decode:
            return super().forward(x)
        pre, values, indices, recon = self.sparse_forward(x)
        acts = torch.zeros_like(pre).scatter(-1, indices, values)
        return DictionaryOutput(recon=recon, acts=acts, pre=pre)

    def loss(
        self, x: Float[Tensor, "batch d_in"], target: Float[Tensor, "batch d_out"], ctx: TrainingContext
    ) -> LossOutput:
        if not self.sparse_decode:
            recon, acts, pre = self(x)
            return self.topk_loss(pre, recon, target, ctx, fired_features(acts), mean_l0(acts.detach(), self.comm))
        pre, values, indices, recon = self.sparse_forward(x)
        active = (values.detach() > 0).float()  # [batch, k]
        fired = pre.new_zeros(pre.shape[-1]).index_add_(0, indices.flatten(), active.flatten()) > 0
        l0 = self.comm.feature_sum(active.sum(-1)).mean()
        return self.topk_loss(pre, recon, target, ctx, fired, l0)

    def topk_loss(
        self, pre: Float[Tensor, "batch d_sae"], recon: Float[Tensor, "batch d_out"],
        target: Float[Tensor, "batch d_out"], ctx: TrainingContext, fired: Bool[Tensor, "d_sae"],
        l0: Float[Tensor, ""],
    ) -> LossOutput:
        """MSE + aux_coefficient * AuxK."""
        mse = reconstruction_mse(recon, target)
        aux = auxk_loss(pre, target - recon, self.W_dec, ctx.dead_mask, self.cfg.aux_k, self.comm)
        loss = mse + self.cfg.aux_coefficient * aux
        return LossOutput(loss, {"mse": mse.detach(), "aux": aux.detach(), "l0": l0}, fired)
