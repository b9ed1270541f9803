"""Stream a 2d activation cache as batches of whole contexts, in the cache's own order.

The order is fixed (shards as the manifest lists them, rows in file order), so two passes over
the cache see the same contexts in the same order, and a context's place in that order (its
"stream index") breaks ties between equal statistics the same way for any batch size.

Which positions count as tokens: ``valid`` is the cache's mask (false on padding); ``analyzed``
also leaves out the framing special tokens (BOS, CLS, SEP, separators: ``data.framing``) unless
``include_bos``, the same tokens a 1d cache keeps. Statistics see only analyzed positions; windows
of text show every valid one.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import NamedTuple

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from lm_saes.activations.reader import ActivationCache


class ContextBatch(NamedTuple):
    activations: Float[Tensor, "batch ctx d_model"]  # float32, on the analysis device
    tokens: Int[Tensor, "batch ctx"]  # int64 token ids
    context_ids: Int[Tensor, "batch"]  # int64: the context's position in the dataset's stream
    valid: Bool[Tensor, "batch ctx"]  # real tokens (false on padding)
    analyzed: Bool[Tensor, "batch ctx"]  # valid tokens the statistics count
    first: int  # stream index of this batch's first context


def n_stream_contexts(cache: ActivationCache, max_contexts: int | None) -> int:
    """Contexts a pass reads: all of the cache's, or its first ``max_contexts``."""
    total = sum(shard.n_rows for shard in cache.shards)
    return total if max_contexts is None else min(total, max_contexts)


def context_batches(
    cache: ActivationCache,
    batch_size: int,
    device: torch.device,
    specials: Collection[int],
    include_bos: bool = False,
    max_contexts: int | None = None,
) -> Iterator[ContextBatch]:
    """Batches of ``batch_size`` contexts (the last may be smaller), read shard by shard."""
    if cache.layout != "2d":
        raise ValueError(f"{cache.hook_dir} is a {cache.layout} cache; analysis needs whole contexts (layout 2d)")
    remaining = n_stream_contexts(cache, max_contexts)
    first = 0
    pending: list[dict[str, Tensor]] = []  # pieces of the next batch, fewer than batch_size rows
    n_pending = 0
    for i in range(len(cache.shards)):
        if remaining == 0:
            break
        shard = cache.load_shard(i)  # one shard in host memory at a time (at most shard_size_mb)
        n = min(len(shard["context_ids"]), remaining)
        remaining -= n
        start = 0
        while start < n:
            take = min(batch_size - n_pending, n - start)
            pending.append({k: v[start : start + take] for k, v in shard.items()})
            n_pending, start = n_pending + take, start + take
            if n_pending == batch_size:
                yield _to_batch(_join(pending), first, device, specials, include_bos)
                first, pending, n_pending = first + batch_size, [], 0
    if pending:
        yield _to_batch(_join(pending), first, device, specials, include_bos)


def analyzed_positions(
    tokens: Int[Tensor, "batch ctx"], valid: Bool[Tensor, "batch ctx"], specials: Collection[int], include_bos: bool
) -> Bool[Tensor, "batch ctx"]:
    """The valid positions the statistics count: all of them with ``include_bos``, else those
    that are not framing special tokens."""
    if include_bos or not specials:
        return valid
    return valid & ~torch.isin(tokens, torch.tensor(sorted(specials), dtype=tokens.dtype, device=tokens.device))


def _join(parts: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    if len(parts) == 1:
        return parts[0]
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def _to_batch(
    rows: dict[str, Tensor], first: int, device: torch.device, specials: Collection[int], include_bos: bool
) -> ContextBatch:
    tokens = rows["tokens"].to(device=device, dtype=torch.int64)  # [batch, ctx]
    valid = rows["mask"].to(device)  # [batch, ctx]
    analyzed = analyzed_positions(tokens, valid, specials, include_bos)
    return ContextBatch(
        activations=rows["activations"].to(device).float(),  # [batch, ctx, d_model]
        tokens=tokens,
        context_ids=rows["context_ids"].to(device=device, dtype=torch.int64),
        valid=valid,
        analyzed=analyzed,
        first=first,
    )
