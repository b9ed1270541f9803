"""BatchTopK SAE (Bussmann et al. 2024, "BatchTopK Sparse Autoencoders").

While training, the k x batch largest pre-activations of the whole batch are kept (ReLU'd), so
a token may use more or fewer than k features. At inference a single threshold replaces the
batch: acts = ReLU(pre) * 1{pre > threshold}, where the threshold is an EMA of the smallest
positive activation kept in each training batch. It starts unset (-1, i.e. a plain ReLU): the
first batch sets it, later ones move it by threshold_momentum. The loss is TopK's (MSE + AuxK).

Fast paths, as TopK's: ``sparse_backward`` (W_enc's gradient through the kept pre-activations only),
``sparse_decode`` (a training batch's kept (token, feature) pairs, in token order, decode as one
embedding bag per token: a token may hold any number of features; O(k batch d_out)) and
``auxk_sync_free``; each False gives its eager twin.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor

from lm_saes.config import BatchTopKConfig
from lm_saes.dictionaries.base import (
    Dictionary, DictionaryOutput, LossOutput, Stack, TrainingContext, fired_features, mean_l0, stacked_bias,
    stacked_decode, stacked_pre_acts,
)
from lm_saes.dictionaries.parallel import SINGLE_DEVICE, Collectives
from lm_saes.dictionaries.sparse import bag_decode, dense_decode, dense_gather, sparse_decode, sparse_gather
from lm_saes.dictionaries.topk import TopKDictionary, code_stats, select_dead, topk_loss

UNSET_THRESHOLD = -1.0


def batch_topk_code(
    pre: Float[Tensor, "batch d_sae"], k: int, comm: Collectives = SINGLE_DEVICE
) -> tuple[Float[Tensor, "n"], Int[Tensor, "n"]]:
    """The k * batch largest entries of the whole batch, ReLU'd, and their positions in the flattened
    [batch * d_sae] pre-activations (token t's feature f at t * d_sae + f), in ascending position.

    Distributed, "the whole batch" is every rank's rows and feature shards: each rank offers its
    own top k * batch and keeps those at or above the k * batch-th largest of all offers.
    """
    n = k * pre.shape[0] * comm.dp_size  # k times the global batch
    flat = pre.reshape(1, -1)  # [1, batch * d_sae]
    values, indices = flat.topk(min(n, flat.shape[-1]), dim=-1)
    if comm.distributed:
        kth = comm.kth_largest(values, n, over="all")
        values = torch.where(values >= kth, values, torch.zeros_like(values))
    indices, order = indices[0].sort()  # distinct positions: a canonical order, token by token
    return torch.relu(values[0][order]), indices


def batch_topk_activation(
    pre: Float[Tensor, "batch d_sae"], k: int, comm: Collectives = SINGLE_DEVICE
) -> Float[Tensor, "batch d_sae"]:
    """The k * batch largest entries of the whole batch, ReLU'd, kept where they are; zeros elsewhere."""
    values, positions = batch_topk_code(pre, k, comm)
    return torch.zeros_like(pre).view(-1).scatter(0, positions, values).view_as(pre)


def threshold_activation(
    pre: Float[Tensor, "batch d_sae"], threshold: Float[Tensor, ""]
) -> Float[Tensor, "batch d_sae"]:
    return torch.relu(pre) * (pre > threshold)


def updated_threshold(
    threshold: Float[Tensor, ""], acts: Float[Tensor, "..."], momentum: float,
    comm: Collectives = SINGLE_DEVICE,
) -> Float[Tensor, ""]:
    """EMA of the smallest positive activation (over every rank); the first batch sets it; a batch
    with none keeps it. ``acts``: the batch's activations, dense or only the kept values."""
    fired = acts > 0
    smallest = comm.all_min(torch.where(fired, acts, float("inf")).min())
    ema = momentum * threshold + (1 - momentum) * smallest
    new = torch.where(threshold < 0, smallest, ema)
    return torch.where(comm.all_any(fired.any()), new, threshold)


class BatchTopKDictionary(TopKDictionary):
    kind = "batchtopk"
    cfg: BatchTopKConfig
    # False: ``loss`` leaves the inference threshold alone, so it has no side effect (and torch.func
    # can transform it, as the LLC's sampler does); training keeps it True.
    update_threshold = True

    def stack_key(self) -> tuple:
        return (*super().stack_key(), self.update_threshold)

    def __init__(self, cfg: BatchTopKConfig, d_in: int, d_out: int, transcoder: bool = False) -> None:
        super().__init__(cfg, d_in, d_out, transcoder)
        self.register_buffer("threshold", torch.tensor(UNSET_THRESHOLD))

    def activate(self, pre: Float[Tensor, "batch d_sae"]) -> Float[Tensor, "batch d_sae"]:
        if self.training:
            return batch_topk_activation(pre, self.cfg.k, self.comm)
        return threshold_activation(pre, self.threshold)

    def forward(self, x: Float[Tensor, "batch d_in"]) -> DictionaryOutput:
        return Dictionary.forward(self, x)  # dense: a token may hold any number of features

    @classmethod
    def stacked_loss(
        cls, st: Stack, x: Float[Tensor, "M batch d_in"], target: Float[Tensor, "M batch d_out"],
        ctxs: list[TrainingContext],
    ) -> LossOutput:
        first, comm = st.members[0], st.comm
        sparse_backward = first.sparse_backward and comm.tp_size == 1 and first.training
        bias = stacked_bias(st)  # [M, d_sae]
        with torch.set_grad_enabled(torch.is_grad_enabled() and not sparse_backward):
            pre = stacked_pre_acts(st, x, bias)  # [M, batch, d_sae]
        gather = sparse_gather if sparse_backward else dense_gather
        if first.training:
            codes = [batch_topk_code(p, m.cfg.k, comm) for p, m in zip(pre.detach().unbind(0), st.members)]
            # The kept values again, differentiably: gathered at their positions (zero-padded to the longest code)
            width, d_sae = max(len(v) for v, _ in codes), pre.shape[-1]
            positions = torch.stack([F.pad(p, (0, width - len(p))) for _, p in codes])  # [M, n]
            kept = torch.stack([F.pad(v, (0, width - len(v))) for v, _ in codes]) > 0
            picked = gather(pre, x, st.tensors["W_enc"], bias, (positions % d_sae).unsqueeze(-1), positions // d_sae)
            values = torch.where(kept, picked.squeeze(-1), 0.0)
            codes = [(v[:len(p)], p) for v, (_, p) in zip(values.unbind(0), codes)]
            if first.update_threshold:
                for i, (member, (values, _)) in enumerate(zip(st.members, codes)):
                    threshold = st.tensors["threshold"][i]  # a view of the member's buffer
                    threshold.copy_(updated_threshold(threshold, values.detach(), member.cfg.threshold_momentum, comm))
            recon, fired, l0 = (decode_pairs if first.sparse_decode else decode_dense)(st, pre, codes)
        else:
            acts = threshold_activation(pre, st.tensors["threshold"].view(-1, 1, 1))
            recon, fired, l0 = stacked_decode(st, acts), fired_features(acts), mean_l0(acts.detach(), comm)
        dead = select_dead(pre.detach(), [c.dead_mask for c in ctxs], [m.cfg.aux_k for m in st.members], comm,
                           sync_free=first.auxk_sync_free)
        aux_picked = gather(pre, x, st.tensors["W_enc"], bias, dead[0].indices) if dead is not None else None
        decode = sparse_decode if first.sparse_decode and comm.tp_size == 1 else dense_decode
        return topk_loss(st, recon, target, aux_picked, dead, decode, fired, l0)


Code = tuple[Float[Tensor, "n"], Int[Tensor, "n"]]  # a member's kept values and flat positions (batch_topk_code)
Decoded = tuple[Float[Tensor, "M batch d_out"], Bool[Tensor, "M d_sae"], Float[Tensor, "M"]]  # recon, fired, l0


def decode_pairs(st: Stack, pre: Float[Tensor, "M batch d_sae"], codes: list[Code]) -> Decoded:
    """Each member's kept (token, feature) pairs decoded as one embedding bag per token."""
    n_tokens, d_sae = pre.shape[1:]
    recon = torch.stack([bag_decode(values, positions // d_sae, positions % d_sae, n_tokens, W_dec)
                         for (values, positions), W_dec in zip(codes, st.tensors["W_dec"].unbind(0))])
    recon = st.comm.reduce(recon) + st.tensors["b_dec"].unsqueeze(1)
    width = max(len(values) for values, _ in codes)  # the pairs as [M, 1, n], zero-padded
    values = torch.stack([F.pad(v, (0, width - len(v))) for v, _ in codes]).unsqueeze(1)
    features = torch.stack([F.pad(p % d_sae, (0, width - len(p))) for _, p in codes]).unsqueeze(1)
    return recon, *code_stats(values, features, st, n_tokens)


def decode_dense(st: Stack, pre: Float[Tensor, "M batch d_sae"], codes: list[Code]) -> Decoded:
    """``decode_pairs``'s eager twin: dense [M, batch, d_sae] activations times W_dec."""
    acts = torch.stack([torch.zeros_like(p).view(-1).scatter(0, positions, values).view_as(p)
                        for p, (values, positions) in zip(pre.unbind(0), codes)])
    return stacked_decode(st, acts), fired_features(acts), mean_l0(acts.detach(), st.comm)
