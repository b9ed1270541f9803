"""A batch's feature activations as the sparse list of where features fire ("codes").

Every statistic of the analysis is computed from these triples, never from the dense
[batch, ctx, d_sae] activations: a TopK dictionary's codes come straight from its top-k selection
(``topk_codes``, no dense scatter and no search for nonzeros); any other dictionary's come from
its dense activations (``dense_codes``, the slow twin of the TopK path, compared in tests).
Codes are small, so pass 1 keeps them (``KeptBatch``) for pass 2 to replay without encoding
again (``analyze.py``).

Conventions: a feature fires on an analyzed token where its activation is > 0 (every variant's
activations are >= 0). Entries are ordered by (context row, position, feature), as the dense
path finds them, so that every sum over them runs in one order whichever path produced them.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from jaxtyping import Float, Int
from torch import Tensor

from lm_saes.analysis.contexts import ContextBatch
from lm_saes.dictionaries import Dictionary
from lm_saes.dictionaries.topk import topk_select


class FiringTokens(NamedTuple):
    """The (context, position, feature) triples of one batch where a feature fires."""

    rows: Int[Tensor, "n"]  # context row in the batch
    positions: Int[Tensor, "n"]
    features: Int[Tensor, "n"]
    values: Float[Tensor, "n"]  # activations, > 0, float32

    def windows(
        self, rows: Int[Tensor, "m"], features: Int[Tensor, "m"], starts: Int[Tensor, "m"], width: int,
        ctx: int, d_sae: int,
    ) -> Float[Tensor, "m width"]:
        """Each (row, feature)'s activations at positions start .. start + width - 1 (0 where it
        does not fire, or outside the context). With the codes ordered by (row, feature,
        position), a window is the run of at most ``width`` codes from one binary search."""
        keys, order = ((self.rows * d_sae + self.features) * ctx + self.positions).sort()  # [n]
        owner = rows * d_sae + features  # [m]
        wanted = owner * ctx + starts  # the key at each window's start
        if len(keys) == 0:
            return torch.zeros(len(wanted), width, dtype=self.values.dtype, device=wanted.device)
        run = torch.searchsorted(keys, wanted)[:, None] + torch.arange(width, device=keys.device)  # [m, width]
        inside = run < len(keys)
        run = run.clamp(max=len(keys) - 1)
        found = keys[run]
        offset = found - wanted[:, None]  # position - start, for the codes of this row and feature
        mine = inside & (offset >= 0) & (offset < width) & (found // ctx == owner[:, None])
        values = torch.where(mine, self.values[order[run]], 0.0)
        return torch.zeros_like(values).scatter_add_(1, offset.clamp(0, width - 1), values)


def dense_codes(batch: ContextBatch, acts: Float[Tensor, "batch ctx d_sae"]) -> FiringTokens:
    """Where features fire on analyzed tokens, from any dictionary's dense activations."""
    n, ctx, d_sae = acts.shape
    flat = acts.view(n * ctx, d_sae)
    tokens, features = flat.nonzero(as_tuple=True)  # row-major: token order, then feature order
    values = flat[tokens, features]
    return _kept(batch, tokens, features, values.float(), ctx)


def topk_codes(
    batch: ContextBatch, values: Float[Tensor, "tokens k"], indices: Int[Tensor, "tokens k"]
) -> FiringTokens:
    """The same triples from a TopK selection (each token's k values and feature indices)."""
    ctx = batch.tokens.shape[1]
    indices, order = indices.sort(dim=-1)  # features ascending within each token, as dense_codes
    values = values.gather(-1, order)
    tokens = torch.arange(len(indices), device=indices.device)[:, None].expand_as(indices)
    return _kept(batch, tokens.reshape(-1), indices.reshape(-1), values.reshape(-1).float(), ctx)


def _kept(batch: ContextBatch, tokens: Tensor, features: Tensor, values: Tensor, ctx: int) -> FiringTokens:
    keep = (values > 0) & batch.analyzed.view(-1)[tokens]
    tokens, features, values = tokens[keep], features[keep], values[keep]
    return FiringTokens(tokens // ctx, tokens % ctx, features, values)


def encode_codes(dictionary: Dictionary, batch: ContextBatch, sparse: bool = True) -> FiringTokens:
    """Encode a batch of contexts: the codes of its analyzed tokens. ``sparse=False`` takes the
    dense path for every dictionary (the slow twin of the TopK path)."""
    n, ctx, d = batch.activations.shape
    x = batch.activations.view(n * ctx, d)
    if sparse and dictionary.kind == "topk":
        pre = dictionary.pre_acts(dictionary.normalize(x))  # [n * ctx, d_sae]
        return topk_codes(batch, *topk_select(pre, dictionary.cfg.k, dictionary.comm))
    return dense_codes(batch, dictionary.encode(x).view(n, ctx, -1))


class KeptBatch(NamedTuple):
    """A batch as pass 2 needs it again: the contexts without their activations, and the codes,
    held compactly on the host."""

    tokens: Int[Tensor, "batch ctx"]  # int32
    context_ids: Int[Tensor, "batch"]
    valid: Tensor  # [batch, ctx] bool
    analyzed: Tensor  # [batch, ctx] bool
    first: int
    cells: Int[Tensor, "n"]  # int32: row * ctx + position of each code
    features: Int[Tensor, "n"]  # int32
    values: Float[Tensor, "n"]

    @staticmethod
    def keep(batch: ContextBatch, fired: FiringTokens) -> KeptBatch:
        ctx = batch.tokens.shape[1]
        small = lambda t: t.to("cpu", torch.int32)  # noqa: E731
        return KeptBatch(small(batch.tokens), batch.context_ids.cpu(), batch.valid.cpu(), batch.analyzed.cpu(),
                         batch.first, small(fired.rows * ctx + fired.positions), small(fired.features),
                         fired.values.cpu())

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self if isinstance(t, Tensor))

    def restore(self, device: torch.device) -> tuple[ContextBatch, FiringTokens]:
        ctx = self.tokens.shape[1]
        tokens = self.tokens.to(device, torch.int64)
        batch = ContextBatch(torch.empty(0, device=device), tokens, self.context_ids.to(device),
                             self.valid.to(device), self.analyzed.to(device), self.first)
        cells = self.cells.to(device, torch.int64)
        fired = FiringTokens(cells // ctx, cells % ctx, self.features.to(device, torch.int64), self.values.to(device))
        return batch, fired
