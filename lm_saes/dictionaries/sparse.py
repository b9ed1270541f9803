"""Products with sparse codes whose cost follows the chosen features, not the dictionary's size.

A TopK code is ``values`` [M, N, K] at the features ``indices`` [M, N, K]: for each of M stacked
dictionaries (a single one is a stack of one) and each of N tokens, K chosen features (a padded
slot has the value 0 and any valid index). Two products need only those:

    decode           recon[i, t] = sum_j values[i, t, j] W_dec[i][indices[i, t, j]]
    encoder backward d W_enc[i][:, f] = sum_{t, j: indices[i, t, j] = f} g[i, t, j] x[i, t]

O(M N K d) work instead of the dense O(M N d_sae d) products with a [M, N, d_sae] matrix of
mostly zeros. The decode is ``F.embedding_bag`` member by member; the encoder backward folds the
member axis into the feature axis (member i's feature f is row i * d_sae + f) and accumulates with
``index_add_`` over chunks of tokens, in token order. On the CPU every feature's sum therefore adds
the same terms in the same order whatever the stack's size and whatever zero-valued padding sits
between them, so a member's gradient has the same bits in a stack of one and in a stack of many.
(On a GPU ``index_add_`` and embedding_bag's backward use atomics: exact up to rounding only, like
every scatter there.)

Each product has an eager twin of the same signature (``dense_decode``, ``dense_gather``) going
through a dense [M, N, d_sae] matrix and autograd; tests compare them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

# Floats of [tokens, K, d] outer products materialised at once: 4 MB on a CPU (they stay in its cache);
# 256 MB on an accelerator, where each chunk costs a few kernel launches.
CHUNK_ELEMENTS = {"cpu": 1 << 20}
ACCELERATOR_CHUNK_ELEMENTS = 1 << 26


def embedding_decode(
    values: Float[Tensor, "N K"], indices: Int[Tensor, "N K"], W_dec: Float[Tensor, "d_sae d_out"]
) -> Float[Tensor, "N d_out"]:
    """sum_j values[t, j] W_dec[indices[t, j]] for one dictionary (no b_dec)."""
    if indices.shape[-1] == 0:  # nothing chosen (a member of a stack without dead features)
        return W_dec.new_zeros(len(indices), W_dec.shape[-1])
    return F.embedding_bag(indices, W_dec, per_sample_weights=values.to(W_dec.dtype), mode="sum")


def sparse_decode(
    values: Float[Tensor, "M N K"], indices: Int[Tensor, "M N K"], W_dec: Float[Tensor, "M d_sae d_out"],
    widths: list[int],
) -> Float[Tensor, "M N d_out"]:
    """Each member's ``embedding_decode`` (no b_dec) of its first ``widths[i]`` slots, in O(M N K d_out).
    (Only a member's own slots: the padding would add terms to embedding_bag's backward sums and
    change their rounding.)"""
    return torch.stack([embedding_decode(v[:, :k], i[:, :k], w) for v, i, w, k
                        in zip(values.unbind(0), indices.unbind(0), W_dec.unbind(0), widths)])


def dense_decode(
    values: Float[Tensor, "M N K"], indices: Int[Tensor, "M N K"], W_dec: Float[Tensor, "M d_sae d_out"],
    widths: list[int],
) -> Float[Tensor, "M N d_out"]:
    """``sparse_decode``'s eager twin: scatter into dense [M, N, d_sae] activations (padding adds
    zeros), then a batched matmul."""
    acts = values.new_zeros(*values.shape[:2], W_dec.shape[1]).scatter_add(-1, indices, values)
    return torch.bmm(acts.to(W_dec.dtype), W_dec)


def bag_decode(
    values: Float[Tensor, "n"], tokens: Int[Tensor, "n"], features: Int[Tensor, "n"], n_tokens: int,
    W_dec: Float[Tensor, "d_sae d_out"],
) -> Float[Tensor, "N d_out"]:
    """recon[t] = sum of values[j] W_dec[features[j]] over the j with tokens[j] = t (``tokens``
    ascending; a token may have any number of features, or none): one bag per token."""
    offsets = torch.searchsorted(tokens, torch.arange(n_tokens, device=tokens.device))  # [N], where each bag starts
    return F.embedding_bag(features, W_dec, offsets, per_sample_weights=values.to(W_dec.dtype), mode="sum")


def scatter_outer(
    indices: Int[Tensor, "n K"], weights: Float[Tensor, "n K"], rows: Float[Tensor, "r d"], n_features: int,
    row_of: Int[Tensor, "n"] | None = None,
) -> Float[Tensor, "n_features d"]:
    """out[f] = sum over (t, j) with indices[t, j] = f of weights[t, j] rows[row_of[t]], added in (t, j)
    order (``row_of`` None: rows[t])."""
    n, k = indices.shape
    d = rows.shape[-1]
    out = torch.zeros(n_features, d, dtype=torch.float32, device=rows.device)
    step = max(1, CHUNK_ELEMENTS.get(rows.device.type, ACCELERATOR_CHUNK_ELEMENTS) // max(1, k * d))
    for start in range(0, n, step):
        stop = start + step
        chunk = rows[start:stop] if row_of is None else rows.index_select(0, row_of[start:stop])
        products = weights[start:stop].float().unsqueeze(-1) * chunk.float().unsqueeze(-2)  # [c, K, d]
        out.index_add_(0, indices[start:stop].reshape(-1), products.reshape(-1, d))
    return out


def _gathered(pre: Tensor, indices: Tensor, tokens: Tensor | None) -> Tensor:
    """pre[i, t, indices[i, t, j]], or with ``tokens`` pre[i, tokens[i, r], indices[i, r, j]]."""
    if tokens is None:
        return pre.gather(-1, indices)
    positions = tokens.unsqueeze(-1) * pre.shape[-1] + indices  # [M, R, K] in the flattened [N d_sae]
    return pre.flatten(1).gather(1, positions.flatten(1)).view_as(indices)


class _SparseGather(torch.autograd.Function):
    @staticmethod
    def forward(ctx, pre: Tensor, x: Tensor, W_enc: Tensor, bias: Tensor, indices: Tensor,
                tokens: Tensor | None) -> Tensor:
        ctx.save_for_backward(x, indices, tokens)
        ctx.d_sae = W_enc.shape[-1]
        return _gathered(pre, indices, tokens)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[None, None, Tensor | None, Tensor | None, None, None]:
        x, indices, tokens = ctx.saved_tensors
        M, R, _ = grad.shape
        N, d_in = x.shape[1:]
        d_sae = ctx.d_sae
        members = torch.arange(M, device=indices.device).view(-1, 1, 1)
        flat = (indices + members * d_sae).flatten(0, 1)  # [M R, K]: member i's feature f is row i d_sae + f
        grads = grad.flatten(0, 1)  # [M R, K]
        grad_W = grad_bias = None
        if ctx.needs_input_grad[2]:
            row_of = None if tokens is None else (tokens + members.view(-1, 1) * N).flatten()  # rows of x [M N, d_in]
            grad_W = scatter_outer(flat, grads, x.reshape(M * N, d_in), M * d_sae, row_of)
            grad_W = grad_W.view(M, d_sae, d_in).transpose(1, 2)
        if ctx.needs_input_grad[3]:
            grad_bias = torch.zeros(M * d_sae, dtype=torch.float32, device=grad.device)
            grad_bias = grad_bias.index_add_(0, flat.reshape(-1), grads.reshape(-1).float()).view(M, d_sae)
        return None, None, grad_W, grad_bias, None, None


def sparse_gather(
    pre: Float[Tensor, "M N d_sae"], x: Float[Tensor, "M N d_in"], W_enc: Float[Tensor, "M d_in d_sae"],
    bias: Float[Tensor, "M d_sae"], indices: Int[Tensor, "M R K"], tokens: Int[Tensor, "M R"] | None = None,
) -> Float[Tensor, "M R K"]:
    """``pre`` at ``indices`` (row r of them on token ``tokens[i, r]``, or on token r), where
    pre = x W_enc + bias was computed without gradients; differentiable in W_enc and bias through the
    chosen pre-activations alone (d W_enc in O(M R K d_in)). x gets no gradient: it is data."""
    return _SparseGather.apply(pre, x, W_enc, bias, indices, tokens)


def dense_gather(
    pre: Float[Tensor, "M N d_sae"], x: Float[Tensor, "M N d_in"], W_enc: Float[Tensor, "M d_in d_sae"],
    bias: Float[Tensor, "M d_sae"], indices: Int[Tensor, "M R K"], tokens: Int[Tensor, "M R"] | None = None,
) -> Float[Tensor, "M R K"]:
    """``sparse_gather``'s eager twin: ``pre`` (computed with gradients) gathered; autograd scatters the
    gradient into a dense [M, N, d_sae] matrix and multiplies it by x (O(M N d_sae d_in))."""
    return _gathered(pre, indices, tokens)
