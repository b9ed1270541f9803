"""Statistics of the decoder weights alone: norms, direct logit effects, nearest features.

Logit effects: feature i's direct effect on the logits is W_dec[i] @ W_U, the change in the
logits per unit of activation if its decoder row were added to the final residual stream and
went straight to the unembedding. The final layer norm (its centring, scale and learned gain)
and every later layer are ignored, as in the usual "logit lens" reading of a feature.

Nearest features: cosine similarity between decoder rows, each feature's top n other features.

Both run over blocks of features so that memory stays O(block * max(vocab, d_sae)) (256 MiB of
float32 per block by default), never O(d_sae^2), e.g. for d_sae = 65536.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from jaxtyping import Float, Int
from torch import Tensor

BLOCK_ELEMENTS = 1 << 26  # float32 elements of one block's [block, vocab] or [block, d_sae] matrix


class TopValues(NamedTuple):
    values: Float[Tensor, "d_sae n"]
    indices: Int[Tensor, "d_sae n"]


class LogitEffects(NamedTuple):
    positive: TopValues  # largest effects, descending
    negative: TopValues  # most negative effects, ascending


def _blocks(n_rows: int, width: int) -> list[tuple[int, int]]:
    size = max(1, BLOCK_ELEMENTS // max(1, width))
    return [(start, min(n_rows, start + size)) for start in range(0, n_rows, size)]


def decoder_norms(W_dec: Float[Tensor, "d_sae d_out"]) -> Float[Tensor, "d_sae"]:
    return W_dec.float().norm(dim=1)


@torch.no_grad()
def logit_effects(
    W_dec: Float[Tensor, "d_sae d_model"], W_U: Float[Tensor, "d_model vocab"], n: int
) -> LogitEffects:
    """Top ``n`` positive and negative entries of each row of W_dec @ W_U, block by block."""
    W_U = W_U.to(device=W_dec.device, dtype=torch.float32)
    n = min(n, W_U.shape[1])
    parts: list[tuple[Tensor, ...]] = []
    for start, stop in _blocks(len(W_dec), W_U.shape[1]):
        effects = W_dec[start:stop].float() @ W_U  # [block, vocab]
        top = effects.topk(n, dim=1)
        bottom = effects.topk(n, dim=1, largest=False)
        parts.append((top.values, top.indices, bottom.values, bottom.indices))
    pos_v, pos_i, neg_v, neg_i = (torch.cat(p) for p in zip(*parts))
    return LogitEffects(TopValues(pos_v, pos_i), TopValues(neg_v, neg_i))


@torch.no_grad()
def nearest_features(W_dec: Float[Tensor, "d_sae d_out"], n: int) -> TopValues:
    """Each feature's ``n`` most cosine-similar other features (by decoder row), descending."""
    d_sae = len(W_dec)
    n = min(n, d_sae - 1)
    unit = W_dec.float()
    unit = unit / unit.norm(dim=1, keepdim=True).clamp(min=1e-12)  # [d_sae, d_out]; zero rows stay 0
    values, indices = [], []
    for start, stop in _blocks(d_sae, d_sae):
        cosine = unit[start:stop] @ unit.T  # [block, d_sae]
        own = torch.arange(start, stop, device=cosine.device)
        cosine[own - start, own] = float("-inf")  # a feature is not its own neighbour
        top = cosine.topk(n, dim=1)
        values.append(top.values)
        indices.append(top.indices)
    return TopValues(torch.cat(values), torch.cat(indices))
