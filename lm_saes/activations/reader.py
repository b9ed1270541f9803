"""Read an activation cache: check it, then stream shuffled batches of activation vectors.

A notebook reads a cache in two lines::

    cache = open_cache("work/cache/blocks.1.hook_resid_post")
    for acts in cache.batches(4096): ...  # acts: [4096, d_model]

``open_cache`` reads the manifest (an unfinished cache has none and is refused) and checks that
every shard it lists exists with the recorded size; ``verify="sha256"`` also checks checksums
(``manifest.check_shards``). Stages open their caches with ``verify="auto"`` and ``reads``, the
vectors they will read: checksums when they read the whole cache, the sizes alone when they read
less (hashing everything would then cost more than the stage itself).

``ActivationCache.batches`` streams one epoch in three steps:

1. Shards are split across data-parallel ranks after a shuffle seeded by (seed, epoch): largest
   first, each onto the rank holding the fewest rows. Ranks are disjoint, complete together and
   balanced; ``batches_per_rank`` tells a trainer how many batches each rank will get.
2. The rank's shards are taken ``buffer_shards`` at a time (a group) and their rows permuted
   together, seeded by (seed, epoch, rank); the epoch is the groups' permuted rows one after the
   other, cut into batches. A batch's rows are gathered straight from the memory-mapped shards
   (a 1d shard is never copied whole), grouped by shard within the batch; the kernel reads the
   next group's files ahead (``posix_fadvise``) while this one is gathered.
3. For an accelerator, background threads gather up to ``prefetch`` batches ahead of the
   consumer, several at once, into pinned memory (a batch no thread has started yet when it is
   wanted is gathered by the consumer itself); the consumer moves each batch to the device
   (asynchronously) and converts its dtype there. On the CPU the consumer gathers and converts
   each batch itself by default.

A 2d cache streams its valid (unmasked) token vectors the same way, so it can train an SAE too.
"""

from __future__ import annotations

import collections
import functools
import itertools
import os
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Literal, TypeVar

import numpy as np
import torch
from jaxtyping import Float, Int
from safetensors import SafetensorError, safe_open
from torch import Tensor

from lm_saes.activations.manifest import REGENERATE, Manifest, ShardInfo, Verify, check_shards, read_manifest
from lm_saes.errors import CacheError

T = TypeVar("T")
R = TypeVar("R")
THREAD_NAME = "lm_saes-cache-reader"

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def open_cache(
    path: str | Path, verify: Verify | Literal["auto"] = "size", reads: int | None = None
) -> ActivationCache:
    """Open one hook point's cache after checking that its manifest and every shard are whole.

    ``verify``: "size", "sha256" (sizes and checksums), or "auto": checksums unless ``reads``, the
    vectors the caller will read, is fewer than the cache holds."""
    hook_dir = Path(path)
    manifest = read_manifest(hook_dir)
    if manifest.dtype not in DTYPES:
        raise CacheError(f"{hook_dir}: unknown dtype {manifest.dtype!r} in manifest; {REGENERATE}")
    if verify == "auto":
        verify = "sha256" if reads is None or reads >= manifest.n_tokens else "size"
    check_shards(hook_dir, manifest, verify)
    return ActivationCache(hook_dir, manifest)


class ActivationCache:
    """One hook point's cache: its directory and validated manifest. Open it with ``open_cache``."""

    def __init__(self, hook_dir: Path, manifest: Manifest) -> None:
        self.hook_dir = Path(hook_dir)
        self.manifest = manifest
        self._maps: dict[int, Tensor] = {}  # 1d shards mapped by an earlier epoch (see _token_rows)

    @property
    def d_model(self) -> int:
        return self.manifest.d_model

    @property
    def n_tokens(self) -> int:
        """Activation vectors stored: 1d rows, or 2d contexts x context_size (padding included)."""
        return self.manifest.n_tokens

    @property
    def layout(self) -> Literal["1d", "2d"]:
        return self.manifest.layout

    @property
    def dtype(self) -> torch.dtype:
        return DTYPES[self.manifest.dtype]

    @property
    def shards(self) -> list[ShardInfo]:
        return self.manifest.shards

    def __len__(self) -> int:
        return self.n_tokens

    def __repr__(self) -> str:
        return (
            f"ActivationCache({str(self.hook_dir)!r}, layout={self.layout}, "
            f"n_tokens={self.n_tokens}, d_model={self.d_model})"
        )

    def load_shard(self, i: int, names: Sequence[str] | None = None) -> dict[str, Tensor]:
        """Shard ``i``'s tensors (by default all of the layout's), checked against the manifest.
        The tensors are memory-mapped: the disk is read when they are first used."""
        path = self.hook_dir / self.shards[i].file
        spec = self._tensor_spec(self.shards[i].n_rows)
        names = list(spec) if names is None else list(names)
        if unknown := [n for n in names if n not in spec]:
            raise ValueError(f"a {self.layout} shard has no tensors {unknown}; it has {list(spec)}")
        try:
            with safe_open(path, framework="pt") as f:
                if missing := [n for n in names if n not in f.keys()]:
                    raise CacheError(f"shard {path} lacks tensors {missing}; {REGENERATE}")
                tensors = {n: f.get_tensor(n) for n in names}
        except (SafetensorError, OSError) as e:
            raise CacheError(f"shard {path} is not valid safetensors ({e}); {REGENERATE}") from e
        for name, tensor in tensors.items():
            if (tuple(tensor.shape), tensor.dtype) != spec[name]:
                raise CacheError(
                    f"shard {path}: {name!r} is {tensor.dtype} {tuple(tensor.shape)} but the "
                    f"manifest implies {spec[name][1]} {spec[name][0]}; {REGENERATE}"
                )
        return tensors

    def _tensor_spec(self, n: int) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
        """Shape and dtype of each tensor in a shard of ``n`` rows (see ``manifest.py``)."""
        ctx, d = self.manifest.context_size, self.d_model
        if self.layout == "1d":
            return {"activations": ((n, d), self.dtype), "tokens": ((n,), torch.int32)}
        return {
            "activations": ((n, ctx, d), self.dtype),
            "tokens": ((n, ctx), torch.int32),
            "context_ids": ((n,), torch.int64),
            "mask": ((n, ctx), torch.bool),
        }

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        epoch: int = 0,
        rank: int = 0,
        world_size: int = 1,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
        buffer_shards: int = 4,
        prefetch: int = 4,
        threads: int | None = None,
        drop_last: bool = False,
        pin_memory: bool | None = None,
    ) -> Iterator[Float[Tensor, "batch d_model"]]:
        """Stream this rank's share of one epoch as ``[batch_size, d_model]`` activation batches.

        Every token of the epoch is yielded by exactly one of the ``world_size`` ranks; a rank's
        last batch is smaller unless ``drop_last``. The stream is a function of (seed, epoch,
        rank) alone: ``buffer_shards`` shards are mixed together, and within a batch the rows of
        one shard come together. ``shuffle=False`` reads the rank's shards in file order without
        mixing. ``threads`` background threads gather up to ``prefetch`` batches ahead of the
        consumer (default: 2 for an accelerator; 0 for the CPU, where the consumer gathers each
        batch itself, since threads would only take cores from the step that consumes it); the
        shards themselves are only mapped, so host memory holds no more than those batches (the
        page cache holds the files). ``pin_memory`` defaults to True on CUDA. Stopping early
        (``break``, ``close()``) stops the threads.
        """
        device = torch.device(device)
        threads = (0 if device.type == "cpu" else 2) if threads is None else threads
        sizes = dict(batch_size=batch_size, buffer_shards=buffer_shards, prefetch=prefetch)
        for name, value in sizes.items():
            if value < 1:
                raise ValueError(f"{name} must be at least 1, not {value}")
        if threads < 0:
            raise ValueError(f"threads must be at least 0, not {threads}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), not {rank}")
        pin = device.type == "cuda" if pin_memory is None else pin_memory
        dtype = dtype or self.dtype
        shard_ids = self.rank_shards(world_size, shuffle=shuffle, seed=seed, epoch=epoch)[rank]
        groups = list(_groups(shard_ids, buffer_shards))
        mixer = _seeded_generator(seed, epoch, 1, rank)
        host_dtype = dtype if device.type == "cpu" else self.dtype  # off the CPU, convert on the device
        plans = self._batch_plans(groups, batch_size, shuffle, mixer, drop_last)
        gather = functools.partial(_gather, pin=pin, dtype=host_dtype)
        gathered = _in_parallel(plans, gather, threads, prefetch) if threads else (gather(p) for p in plans)
        return _to_device(gathered, device, dtype, pin)

    def rank_shards(
        self, world_size: int, *, shuffle: bool = True, seed: int = 0, epoch: int = 0
    ) -> list[list[int]]:
        """Shard indices per rank, in reading order: a (seed, epoch) shuffle, then each shard,
        largest first, onto the rank holding the fewest rows. Every rank computes the same split,
        so no communication is needed."""
        if world_size < 1:
            raise ValueError(f"world_size must be at least 1, not {world_size}")
        n_shards = len(self.shards)
        if n_shards < world_size:
            raise CacheError(
                f"{self.hook_dir} has {n_shards} shards, fewer than the {world_size} data-parallel "
                "ranks; regenerate it with a smaller shard_size_mb"
            )
        order = list(range(n_shards))
        if shuffle:
            order = torch.randperm(n_shards, generator=_seeded_generator(seed, epoch, 0)).tolist()
        assigned: list[list[int]] = [[] for _ in range(world_size)]
        rows = [0] * world_size
        for i in sorted(order, key=lambda i: -self.shards[i].n_rows):
            lightest = rows.index(min(rows))
            assigned[lightest].append(i)
            rows[lightest] += self.shards[i].n_rows
        position = {shard: k for k, shard in enumerate(order)}
        return [sorted(ids, key=position.__getitem__) for ids in assigned]

    def batches_per_rank(
        self,
        batch_size: int,
        world_size: int = 1,
        *,
        shuffle: bool = True,
        seed: int = 0,
        epoch: int = 0,
        drop_last: bool = False,
    ) -> list[int]:
        """How many batches ``batches`` yields on each rank for the same arguments.

        Ranks may differ by a few batches. A data-parallel trainer runs ``min()`` of this list
        steps per epoch on every rank and then stops iterating, so collective calls stay matched.
        For a 2d cache this reads every shard's mask.
        """
        split = self.rank_shards(world_size, shuffle=shuffle, seed=seed, epoch=epoch)
        tokens = [sum(self._shard_tokens(i) for i in ids) for ids in split]
        return [n // batch_size if drop_last else -(-n // batch_size) for n in tokens]

    def _shard_tokens(self, i: int) -> int:
        """Vectors ``batches`` yields from shard ``i``: all rows in 1d, unmasked positions in 2d."""
        if self.layout == "1d":
            return self.shards[i].n_rows
        return int(self.load_shard(i, ["mask"])["mask"].sum())

    def _token_rows(self, i: int) -> Float[Tensor, "tokens d_model"]:
        """Shard ``i``'s activation vectors: every row in 1d, unmasked positions in 2d.

        A 1d cache that fits in half the machine's memory keeps its shards mapped once an epoch
        has mapped them, so that later epochs gather from pages already mapped instead of
        faulting each one in again; a larger one is mapped afresh each time (its pages would
        not stay in the page cache anyway)."""
        if self.layout == "2d":
            shard = self.load_shard(i, ["activations", "mask"])
            return shard["activations"][shard["mask"]]
        if i in self._maps:
            return self._maps[i]
        rows = self.load_shard(i, ["activations"])["activations"]
        if sum(shard.bytes for shard in self.shards) <= physical_memory() / 2:
            self._maps[i] = rows
        return rows

    def _batch_plans(
        self, groups: list[list[int]], batch_size: int, shuffle: bool, mixer: torch.Generator, drop_last: bool
    ) -> Iterator[_Plan]:
        """Which rows make each batch of the epoch: each group's rows in a random order (file order
        unless ``shuffle``), one group after the other, cut into batches across group boundaries.
        Opening a group maps its shards and asks the kernel to read the next group's files."""
        plan: _Plan = []
        n_planned = 0
        self._read_ahead(groups[0] if groups else [])
        for g, shard_ids in enumerate(groups):
            self._read_ahead(groups[g + 1] if g + 1 < len(groups) else [])
            group = _Group([self._token_rows(i) for i in shard_ids])
            order = torch.randperm(len(group), generator=mixer) if shuffle else torch.arange(len(group))
            while len(order):
                take, order = order[: batch_size - n_planned], order[batch_size - n_planned :]
                plan.append((group, take))
                n_planned += len(take)
                if n_planned == batch_size:
                    yield plan
                    plan, n_planned = [], 0
        if plan and not drop_last:
            yield plan

    def _read_ahead(self, shard_ids: list[int]) -> None:
        """Ask the kernel to read these shards into the page cache in the background (where the
        OS supports it), so that gathering from their maps finds them there."""
        if not hasattr(os, "posix_fadvise"):
            return
        for i in shard_ids:
            fd = os.open(self.hook_dir / self.shards[i].file, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
            finally:
                os.close(fd)


class _Group:
    """A group's shards as one row space: row r of the group is row r - start of its shard."""

    def __init__(self, shards: list[Float[Tensor, "rows d_model"]]) -> None:
        self.shards = shards
        sizes = torch.tensor([len(rows) for rows in shards])
        self.ends = sizes.cumsum(0)  # [n_shards]
        self.starts = self.ends - sizes

    def __len__(self) -> int:
        return int(self.ends[-1])

    def gather_into(self, rows: Int[Tensor, "n"], out: Float[Tensor, "n d_model"]) -> None:
        """``out`` = the group's ``rows``, those of each shard together (in shard order), each
        shard's in the order given: one ``index_select`` per shard, straight from its map."""
        shard = torch.bucketize(rows, self.ends, right=True)  # [n]
        order = torch.argsort(shard, stable=True)
        local = (rows - self.starts[shard])[order]
        counts = torch.bincount(shard, minlength=len(self.shards)).tolist()
        for source, index, part in zip(self.shards, local.split(counts), out.split(counts)):
            if len(index):
                torch.index_select(source, 0, index, out=part)


_Plan = list[tuple[_Group, Int[Tensor, "rows"]]]  # a batch: rows of one group, then maybe of the next


def _gather(plan: _Plan, pin: bool, dtype: torch.dtype) -> Float[Tensor, "batch d_model"]:
    """One batch, written into pinned memory when ``pin``, then converted to ``dtype``."""
    sizes = [len(rows) for _, rows in plan]
    first = plan[0][0].shards[0]
    out = torch.empty((sum(sizes), *first.shape[1:]), dtype=first.dtype, pin_memory=pin)
    for (group, rows), part in zip(plan, out.split(sizes)):
        group.gather_into(rows, part)
    return out.to(dtype)


def physical_memory() -> int:
    """Bytes of RAM on this machine (0 where the OS does not say)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return 0


def _seeded_generator(*key: int) -> torch.Generator:
    """A torch generator seeded from non-negative integers, e.g. (seed, epoch, purpose, rank)."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence(key).generate_state(1)[0]))


def _groups(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while group := list(itertools.islice(iterator, size)):
        yield group


def _to_device(
    batches: Generator[Tensor, None, None], device: torch.device, dtype: torch.dtype, pin: bool
) -> Iterator[Float[Tensor, "batch d_model"]]:
    """Move each batch to ``device`` (asynchronously from pinned memory), then convert its dtype
    there. Closes ``batches``, the prefetching generator, however the iteration ends."""
    try:
        for batch in batches:
            yield batch.to(device, non_blocking=pin).to(dtype)
    finally:
        batches.close()


def _in_parallel(
    items: Iterator[T], work: Callable[[T], R], threads: int, depth: int
) -> Generator[R, None, None]:
    """``work(item)`` for every item, in order, computed by ``threads`` background threads up to
    ``depth`` items ahead of the consumer. An item no thread has started when the consumer wants
    it is worked on by the consumer itself, so it never sits waiting for a thread to be scheduled
    (on a busy machine that wait costs more than the work). An exception raised by ``work`` is
    re-raised here; closing this generator cancels what is queued and joins the threads."""
    pool = ThreadPoolExecutor(threads, thread_name_prefix=THREAD_NAME)
    pending: collections.deque[tuple[Future[R], T]] = collections.deque()

    def next_result() -> R:
        future, item = pending.popleft()
        return work(item) if future.cancel() else future.result()

    try:
        for item in items:
            pending.append((pool.submit(work, item), item))
            if len(pending) > depth:
                yield next_result()
        while pending:
            yield next_result()
    finally:
        for future, _ in pending:
            future.cancel()
        pool.shutdown(wait=True)
