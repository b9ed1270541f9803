"""Training batches: (input, target) pairs from a cache, two aligned caches, or any iterable.

A cache stream repeats the cache epoch after epoch (each epoch reshuffled), so it is endless;
the trainer takes what it needs. The stream is a pure function of (cache, seed), which is what
makes resuming exact: a resumed run skips the batches the first run consumed.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
from jaxtyping import Float
from torch import Tensor

from lm_saes.activations.reader import ActivationCache, open_cache
from lm_saes.errors import CacheError

Pair = tuple[Float[Tensor, "batch d_in"], Float[Tensor, "batch d_out"]]


def cache_pairs(
    cache: str | Path, target_cache: str | Path | None, batch_size: int, seed: int,
    device: torch.device, rank: int = 0, world_size: int = 1, reads: int | None = None,
) -> Iterator[Pair]:
    """Endless (input, target) batches, float32 on ``device``; target = input for an SAE.

    The caches are opened (and verified: checksums when ``reads``, the tokens the caller will
    take, covers a whole cache) before this returns, so a bad cache fails before training starts."""
    source = open_cache(cache, verify="auto", reads=reads)
    target = open_cache(target_cache, verify="auto", reads=reads) if target_cache is not None else None
    if target is not None:
        check_aligned(source, target)
    return _epochs(source, target, batch_size, seed, device, rank, world_size)


def _epochs(source: ActivationCache, target: ActivationCache | None, batch_size: int, seed: int,
            device: torch.device, rank: int, world_size: int) -> Iterator[Pair]:
    for epoch in itertools.count():
        kwargs = dict(seed=seed, epoch=epoch, rank=rank, world_size=world_size, device=device,
                      dtype=torch.float32, drop_last=True)
        inputs = source.batches(batch_size, **kwargs)
        if target is None:
            yield from ((x, x) for x in inputs)
        else:
            yield from zip(inputs, target.batches(batch_size, **kwargs))


def check_aligned(source: ActivationCache, target: ActivationCache) -> None:
    """Two caches pair row by row only if one generate run wrote both (same chunks, same shuffle)."""
    a, b = source.manifest, target.manifest
    same_run = {k: v for k, v in a.config.items() if k != "hooks"} == {
        k: v for k, v in b.config.items() if k != "hooks"
    }
    if not same_run or [s.n_rows for s in a.shards] != [s.n_rows for s in b.shards]:
        raise CacheError(
            f"{source.hook_dir} and {target.hook_dir} were not generated in one run, so their rows "
            "do not pair up; generate both hooks with one `lm-saes generate` config"
        )


def iterable_pairs(batches: Iterable[Tensor | Pair], device: torch.device) -> Iterator[Pair]:
    """Any iterable of [batch, d] tensors (an SAE) or (input, target) pairs, as float32 pairs."""
    for item in batches:
        x, y = item if isinstance(item, (tuple, list)) else (item, item)
        yield x.to(device, torch.float32), y.to(device, torch.float32)
