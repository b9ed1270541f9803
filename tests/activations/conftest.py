"""Real, small activation caches written to the format of ``lm_saes/activations/manifest.py``.

Every stored vector encodes its global token id, so a test can tell exactly which tokens a reader
yielded: column k holds digit k of the id in base 64 (exact in bfloat16); padding is all -1. The
id of a 1d row is its position in the concatenated shards; in 2d it is context * ctx + position.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import pytest
import torch
from safetensors.torch import save_file

from lm_saes.activations.manifest import (
    Manifest,
    ShardInfo,
    file_sha256,
    shard_name,
    write_manifest,
)

BASE = 64


class WrittenCache(NamedTuple):
    hook_dir: Path
    manifest: Manifest
    token_ids: torch.Tensor  # sorted ids of the vectors a reader must yield (2d: unmasked only)


def encode_ids(ids: torch.Tensor, d_model: int) -> torch.Tensor:
    """[...] int64 ids -> [..., d_model] bfloat16 vectors."""
    digits = [(ids // BASE**k) % BASE for k in range(d_model)]
    return torch.stack(digits, dim=-1).to(torch.bfloat16)


def decode_ids(acts: torch.Tensor) -> torch.Tensor:
    """[n, d_model] vectors -> [n] int64 ids (negative for padding)."""
    weights = BASE ** torch.arange(acts.shape[-1], dtype=torch.int64)
    return (acts.to(torch.float32).round().to(torch.int64) * weights).sum(-1)


def context_mask(contexts: torch.Tensor, context_size: int) -> torch.Tensor:
    """Context c holds 1 + c % context_size real tokens, then padding."""
    lengths = 1 + contexts % context_size
    return torch.arange(context_size) < lengths[:, None]


def shard_tensors(first: int, n: int, layout: str, d: int, ctx: int) -> dict[str, torch.Tensor]:
    """Shard tensors for rows first..first+n (tokens in 1d, contexts in 2d)."""
    rows = torch.arange(first, first + n, dtype=torch.int64)
    if layout == "1d":
        return {"activations": encode_ids(rows, d), "tokens": (rows % 50_000).to(torch.int32)}
    ids = rows[:, None] * ctx + torch.arange(ctx)
    mask = context_mask(rows, ctx)
    acts = encode_ids(ids, d)
    acts[~mask] = -1
    return {
        "activations": acts,
        "tokens": (ids % 50_000).to(torch.int32),
        "context_ids": rows,
        "mask": mask,
    }


def write_test_cache(
    hook_dir: Path, layout: str, shard_rows: list[int], d_model: int, context_size: int = 4
) -> WrittenCache:
    """Write real safetensors shards and a manifest with real sizes and checksums."""
    hook_dir.mkdir(parents=True, exist_ok=True)
    shards, first = [], 0
    for i, n in enumerate(shard_rows):
        path = hook_dir / shard_name(i)
        save_file(shard_tensors(first, n, layout, d_model, context_size), path)
        size, sha256 = path.stat().st_size, file_sha256(path)
        shards.append(ShardInfo(file=path.name, n_rows=n, bytes=size, sha256=sha256))
        first += n
    n_contexts = first if layout == "2d" else -(-first // context_size)
    manifest = Manifest(
        lm_saes_version="0.1.0",
        model="test-model",
        hook="blocks.0.hook_resid_post",
        d_model=d_model,
        dtype="bfloat16",
        layout=layout,
        context_size=context_size,
        n_tokens=first * context_size if layout == "2d" else first,
        n_contexts=n_contexts,
        shards=shards,
        config={},
    )
    write_manifest(hook_dir, manifest)
    if layout == "1d":
        token_ids = torch.arange(first)
    else:
        contexts = torch.arange(first)
        ids = contexts[:, None] * context_size + torch.arange(context_size)
        token_ids = ids[context_mask(contexts, context_size)]
    return WrittenCache(hook_dir, manifest, token_ids)


@pytest.fixture
def write_cache():
    """``write_test_cache(hook_dir, layout, shard_rows, d_model, context_size=4)``."""
    return write_test_cache


@pytest.fixture
def token_ids():
    """``decode_ids(acts)``: the global ids of yielded vectors."""
    return decode_ids
