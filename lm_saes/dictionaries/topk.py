"""TopK SAE with the AuxK loss (Gao et al. 2024, "Scaling and evaluating sparse autoencoders").

    acts = ReLU of each token's k largest pre-activations, zero elsewhere
    loss = MSE + aux_coefficient * AuxK

AuxK lets the dead features (ctx.dead_mask) explain the residual e = target - recon: the
top-min(aux_k, n_dead) dead pre-activations (ReLU'd) reconstruct e_hat = aux_acts W_dec (no
b_dec), and AuxK = ||e - e_hat||^2 normalised by the residual's variance. Its gradient reaches
only the dead features, through their activations; e itself is a constant.

Training never builds the dense [batch, d_sae] activations. The selection (each token's top k, and
AuxK's top dead features) is made on pre-activations without gradients; the chosen pre-activations
are then gathered, differentiably, and decoded sparsely. Three switches, each a fast path with an
eager twin of the same signature and the same result (tests compare outputs and gradients):

- ``sparse_backward``: W_enc's gradient only through the chosen pre-activations, O(batch k d_in)
  (``sparse.sparse_gather``); False: autograd through the dense pre-activations, O(batch d_sae d_in).
- ``sparse_decode``: the decoder as an embedding bag over the chosen features, O(batch k d_out);
  False: dense activations times W_dec.
- ``auxk_sync_free``: AuxK's dead features chosen by a top-k over the pre-activations with the live
  ones masked, as tensors; False: the dead columns counted on the host (``int(...)``, a device
  synchronisation each step on a GPU) and only those read.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor

from lm_saes.config import TopKConfig
from lm_saes.dictionaries.base import (
    Dictionary, DictionaryOutput, LossOutput, Stack, TrainingContext, reconstruction_mse, stacked_bias,
    stacked_pre_acts,
)
from lm_saes.dictionaries.parallel import SINGLE_DEVICE, Collectives
from lm_saes.dictionaries.sparse import dense_decode, dense_gather, embedding_decode, sparse_decode, sparse_gather


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


class Selection(NamedTuple):
    """Features chosen per token for each member of a stack, padded to a common width K."""

    indices: Int[Tensor, "M batch K"]
    keep: Bool[Tensor, "M batch K"]  # False at padding (and, under tensor parallelism, below the k-th value)
    widths: list[int]  # each member's own slots (the first ones; the rest is padding)


def _padded(parts: list[Tensor], width: int) -> Tensor:
    """[batch, k_i] tensors, zero-padded on the right to [M, batch, width]."""
    return torch.stack([F.pad(p, (0, width - p.shape[-1])) for p in parts])


def _within(ks: list[int], width: int, like: Tensor) -> Bool[Tensor, "M 1 width"]:
    """Position j < k_i: the slots of member i that hold a choice."""
    positions = torch.arange(width, device=like.device)
    return torch.stack([positions < k for k in ks]).unsqueeze(1)


def select_topk(pre: Float[Tensor, "M batch d_sae"], ks: list[int], comm: Collectives = SINGLE_DEVICE) -> Selection:
    """Each member's k_i largest pre-activations per token (no gradient flows through the choice).

    Members of one k share one top-k call; otherwise each has its own (a top-k of k_i entries is
    not always the first k_i of a wider one: exact ties may come out in another order)."""
    width = min(max(ks), pre.shape[-1])
    if len(set(ks)) == 1:
        values, indices = pre.topk(width, dim=-1)
        keep = torch.ones_like(indices, dtype=torch.bool)
    else:
        chosen = [p.topk(min(k, p.shape[-1]), dim=-1) for p, k in zip(pre.unbind(0), ks)]
        values, indices = _padded([c.values for c in chosen], width), _padded([c.indices for c in chosen], width)
        keep = _within(ks, width, pre).expand_as(indices)
    if comm.tp_size > 1:  # keep what reaches the k-th largest of every shard's offers
        kth = torch.stack([comm.kth_largest(v, k) for v, k in zip(values.unbind(0), ks)])  # [M, batch, 1]
        keep = keep & (values >= kth)
    return Selection(indices, keep, [min(k, pre.shape[-1]) for k in ks])


def select_dead(
    pre: Float[Tensor, "M batch d_sae"], dead: list[Bool[Tensor, "d_sae"] | None], aux_ks: list[int],
    comm: Collectives = SINGLE_DEVICE, *, sync_free: bool,
) -> tuple[Selection, Bool[Tensor, "M"]] | None:
    """AuxK's choice: each member's top min(aux_k, n_dead) dead features per token, and whether it
    has any dead feature; None if no member has a dead mask. ``sync_free``: a top-k over the
    pre-activations with the live features masked; else (the twin, and under tensor parallelism)
    the dead count read on the host and only the dead columns searched."""
    if all(d is None for d in dead):
        return None
    masks = torch.stack([d if d is not None else torch.zeros(pre.shape[-1], dtype=torch.bool, device=pre.device)
                         for d in dead])  # [M, d_sae]
    if sync_free and comm.tp_size == 1:
        width = min(max(aux_ks), pre.shape[-1])
        masked = pre.masked_fill(~masks.unsqueeze(1), float("-inf"))
        if len(set(aux_ks)) == 1:
            indices = masked.topk(width, dim=-1).indices
            keep = torch.ones_like(indices, dtype=torch.bool)
        else:
            chosen = [p.topk(min(k, p.shape[-1]), dim=-1).indices for p, k in zip(masked.unbind(0), aux_ks)]
            indices = _padded(chosen, width)
            keep = _within(aux_ks, width, pre).expand_as(indices)
        keep = keep & masks.gather(1, indices.flatten(1)).view_as(indices)  # fewer dead than aux_k: live ones drop
        return Selection(indices, keep, [min(k, pre.shape[-1]) for k in aux_ks]), masks.any(-1)
    chosen: list[tuple[Tensor, Tensor]] = []
    has_dead: list[bool] = []
    for p, mask, k in zip(pre.unbind(0), masks.unbind(0), aux_ks):
        n_dead = int(comm.feature_sum(mask.sum()))  # the host synchronisation
        has_dead.append(n_dead > 0)
        k = min(k, n_dead)
        if k == 0:
            chosen.append((p.new_zeros(len(p), 0, dtype=torch.long), p.new_zeros(len(p), 0, dtype=torch.bool)))
        elif comm.tp_size == 1:
            columns = mask.nonzero().squeeze(1)  # [n_dead]
            picked = p.index_select(1, columns).topk(k, dim=-1).indices  # [batch, k]
            chosen.append((columns[picked], torch.ones_like(picked, dtype=torch.bool)))
        else:  # each shard offers its dead features' top k; keep what reaches the k-th of all offers
            values, indices = p.masked_fill(~mask, float("-inf")).topk(min(k, p.shape[-1]), dim=-1)
            chosen.append((indices, (values >= comm.kth_largest(values, k)) & values.isfinite()))
    width = max(c[0].shape[-1] for c in chosen)
    if width == 0:
        return None
    selection = Selection(_padded([c[0] for c in chosen], width), _padded([c[1] for c in chosen], width),
                          [c[0].shape[-1] for c in chosen])
    return selection, torch.tensor(has_dead, device=pre.device)


def _kept(values: Float[Tensor, "M batch K"], keep: Bool[Tensor, "M batch K"]) -> Float[Tensor, "M batch K"]:
    return torch.where(keep, torch.relu(values), 0.0)


def auxk_from_reconstruction(
    e_hat: Float[Tensor, "M batch d_out"], residual: Float[Tensor, "M batch d_out"], has_dead: Bool[Tensor, "M"],
    comm: Collectives = SINGLE_DEVICE,
) -> Float[Tensor, "M"]:
    """mean_batch ||e - e_hat||^2 / mean_batch ||e - mean_batch e||^2 per member; 0 for a member with
    no dead feature. The means run over the whole batch, across data-parallel ranks (the residual is
    a constant, so these are plain reductions)."""
    error = reconstruction_mse(e_hat, residual)
    mean = comm.batch_mean(residual.mean(-2))  # [M, d_out]
    variance = comm.batch_mean((residual - mean.unsqueeze(-2)).pow(2).sum(-1).mean(-1))  # [M]
    # A residual constant over the batch (e.g. one token) has no variance to explain: the loss is 0.
    has = (variance > 0) & has_dead
    return torch.where(has, error / torch.where(has, variance, 1.0), 0.0)


def auxk_loss(
    pre: Float[Tensor, "batch d_sae"],
    residual: Float[Tensor, "batch d_out"],
    W_dec: Float[Tensor, "d_sae d_out"],
    dead_mask: Bool[Tensor, "d_sae"] | None,
    aux_k: int,
    comm: Collectives = SINGLE_DEVICE,
) -> Float[Tensor, ""]:
    """AuxK of one dictionary, or 0 if no feature is dead (its gradient reaches ``pre`` and W_dec)."""
    chosen = select_dead(pre.detach().unsqueeze(0), [dead_mask], [aux_k], comm, sync_free=False)
    if chosen is None:
        return pre.new_zeros(())
    (indices, keep, widths), has_dead = chosen
    values = _kept(pre.unsqueeze(0).gather(-1, indices), keep)
    decode = sparse_decode if comm.tp_size == 1 else dense_decode
    e_hat = comm.reduce(decode(values, indices, W_dec.unsqueeze(0), widths))
    return auxk_from_reconstruction(e_hat, residual.detach().unsqueeze(0), has_dead, comm)[0]


class TopKDictionary(Dictionary):
    kind = "topk"
    unit_norm_decoder = True
    cfg: TopKConfig
    fast_paths = ("sparse_backward", "sparse_decode", "auxk_sync_free")

    # Fast paths (False: their eager twins, same outputs and gradients; see the module docstring).
    sparse_backward = True
    sparse_decode = True
    auxk_sync_free = False  # on the CPU the host count is free and searching only the dead columns is cheaper

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

    def forward(self, x: Float[Tensor, "batch d_in"]) -> DictionaryOutput:
        if not self.sparse_decode:
            return super().forward(x)
        rho = self.token_factors(x)
        pre = self.pre_acts(x if rho is None else x * rho)
        values, indices = topk_select(pre, self.cfg.k, self.comm)  # [batch, k] each
        recon = self.comm.reduce(embedding_decode(values, indices, self.W_dec)) + self.b_dec
        acts = torch.zeros_like(pre).scatter(-1, indices, values)
        return DictionaryOutput(recon=recon if rho is None else recon / rho, acts=acts, pre=pre)

    @classmethod
    def stacked_loss(
        cls, st: Stack, x: Float[Tensor, "M batch d_in"], target: Float[Tensor, "M batch d_out"],
        ctxs: list[TrainingContext],
    ) -> LossOutput:
        """MSE + aux_coefficient * AuxK per member, from each token's k chosen features."""
        first, comm = st.members[0], st.comm
        sparse_backward = first.sparse_backward and comm.tp_size == 1
        bias = stacked_bias(st)  # [M, d_sae]
        with torch.set_grad_enabled(torch.is_grad_enabled() and not sparse_backward):
            pre = stacked_pre_acts(st, x, bias)  # [M, batch, d_sae]
        chosen = select_topk(pre.detach(), [m.cfg.k for m in st.members], comm)
        dead = select_dead(pre.detach(), [c.dead_mask for c in ctxs], [m.cfg.aux_k for m in st.members], comm,
                           sync_free=first.auxk_sync_free)
        indices = chosen.indices if dead is None else torch.cat([chosen.indices, dead[0].indices], -1)
        gather = sparse_gather if sparse_backward else dense_gather
        picked = gather(pre, x, st.tensors["W_enc"], bias, indices)  # [M, batch, K (+ aux K)]
        k = chosen.indices.shape[-1]
        values = _kept(picked[..., :k], chosen.keep)
        decode = sparse_decode if first.sparse_decode and comm.tp_size == 1 else dense_decode
        recon = comm.reduce(decode(values, chosen.indices, st.tensors["W_dec"], chosen.widths))
        recon = recon + st.tensors["b_dec"].unsqueeze(1)
        fired, l0 = code_stats(values, chosen.indices, st, x.shape[1])
        return topk_loss(st, recon, target, picked[..., k:], dead, decode, fired, l0)


def code_stats(
    values: Float[Tensor, "M rows K"], indices: Int[Tensor, "M rows K"], st: Stack, n_tokens: int,
) -> tuple[Bool[Tensor, "M d_sae"], Float[Tensor, "M"]]:
    """Which features fired, and the active features per token (over every shard), of a sparse code
    (a TopK code [M, batch, k]; a BatchTopK one as its token-feature pairs [M, 1, n])."""
    active = (values.detach() > 0).float().flatten(1)  # [M, rows K]
    n_features = st.tensors["W_dec"].shape[1]  # this shard's
    fired = torch.zeros(len(active), n_features, device=active.device).scatter_add(1, indices.flatten(1), active) > 0
    return fired, st.comm.feature_sum(active.sum(-1)) / n_tokens  # counts are exact: the mean over tokens


def topk_loss(
    st: Stack, recon: Float[Tensor, "M batch d_out"], target: Float[Tensor, "M batch d_out"],
    aux_picked: Float[Tensor, "M batch A"], dead: tuple[Selection, Bool[Tensor, "M"]] | None, decode,
    fired: Bool[Tensor, "M d_sae"], l0: Float[Tensor, "M"],
) -> LossOutput:
    """MSE + aux_coefficient * AuxK per member (TopK's and BatchTopK's): AuxK decodes the dead
    features' gathered pre-activations ``aux_picked`` (AuxK's choice ``dead``) with ``decode``."""
    mse = reconstruction_mse(recon, target)  # [M]
    if dead is None:
        aux = torch.zeros_like(mse)
    else:
        (aux_indices, aux_keep, widths), has_dead = dead
        e_hat = st.comm.reduce(decode(_kept(aux_picked, aux_keep), aux_indices, st.tensors["W_dec"], widths))
        aux = auxk_from_reconstruction(e_hat, (target - recon).detach(), has_dead, st.comm)
    loss = mse + st.knob("aux_coefficient", mse) * aux
    return LossOutput(loss, {"mse": mse.detach(), "aux": aux.detach(), "l0": l0}, fired)
