"""Pure planning for generation: which contexts form which shard, and how many bytes they take.

A chunk is a fixed set of contexts; its shard for each hook depends only on those contexts, the
chunk index and the seed. That makes a cache independent of how many processes wrote it and of
where a killed run stopped: resuming regenerates exactly the chunks that were missing.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import NamedTuple

import torch
from jaxtyping import Bool, Int
from torch import Tensor

SHARD_HEADER_BYTES = 1024  # safetensors JSON header, generously


class ChunkPlan(NamedTuple):
    chunks: list[Int[Tensor, "contexts"]]  # context indices of each chunk, in order
    contexts_per_chunk: int


def plan_chunks(
    n_contexts: int, context_size: int, max_width: int, elem_bytes: int,
    shard_bytes: int, shuffle: bool, seed: int,
) -> ChunkPlan:
    """Split contexts into chunks whose largest shard stays under ``shard_bytes``.

    With ``shuffle`` the context order is a seeded permutation, so every shard of a 1d cache
    samples contexts from across the whole dataset.
    """
    # A 2d row (activations, ids, mask) bounds a 1d chunk's shard too: it keeps <= ctx tokens.
    per_context = shard_bytes_estimate("2d", 1, 0, context_size, max_width, elem_bytes) - SHARD_HEADER_BYTES
    contexts_per_chunk = max(1, (shard_bytes - SHARD_HEADER_BYTES) // per_context)
    if shuffle:
        order = torch.randperm(n_contexts, generator=torch.Generator().manual_seed(seed))
    else:
        order = torch.arange(n_contexts)
    return ChunkPlan(list(order.split(contexts_per_chunk)), contexts_per_chunk)


def token_shuffle(n_rows: int, seed: int, chunk: int) -> Int[Tensor, "n_rows"]:
    """The seeded in-shard permutation of a 1d chunk's tokens (CPU generator: device-independent)."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + chunk)
    return torch.randperm(n_rows, generator=generator)


def shard_bytes_estimate(
    layout: str, n_contexts: int, n_kept_tokens: int, context_size: int, width: int, elem_bytes: int
) -> int:
    """Bytes of one shard: activations plus token ids (1d), or plus ids, mask, context ids (2d)."""
    if layout == "1d":
        return n_kept_tokens * (width * elem_bytes + 4) + SHARD_HEADER_BYTES
    per_context = context_size * (width * elem_bytes + 4 + 1) + 8
    return n_contexts * per_context + SHARD_HEADER_BYTES


def kept_tokens(
    tokens: Int[Tensor, "n ctx"], mask: Bool[Tensor, "n ctx"], specials: Collection[int]
) -> Bool[Tensor, "n ctx"]:
    """Positions a 1d cache stores: real tokens that are not framing (BOS, CLS, SEP, separators)."""
    return mask & ~torch.isin(tokens, torch.tensor(sorted(specials), dtype=tokens.dtype))
