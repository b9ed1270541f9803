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
2. A background thread reads the rank's shards ahead of the consumer and shuffles their tokens
   together, ``buffer_shards`` shards at a time, seeded by (seed, epoch, rank).
3. The consumer cuts the mixed rows into batches and moves them to the device (on CUDA from pinned
   memory, asynchronously), then converts them to the requested dtype there.

A 2d cache streams its valid (unmasked) token vectors the same way, so it can train an SAE too.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Literal, TypeVar

import numpy as np
import torch
from jaxtyping import Float
from safetensors import SafetensorError, safe_open
from torch import Tensor

from lm_saes.activations.manifest import REGENERATE, Manifest, ShardInfo, Verify, check_shards, read_manifest
from lm_saes.errors import CacheError

T = TypeVar("T")

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
        prefetch: int = 2,
        drop_last: bool = False,
        pin_memory: bool | None = None,
    ) -> Iterator[Float[Tensor, "batch d_model"]]:
        """Stream this rank's share of one epoch as ``[batch_size, d_model]`` activation batches.

        Every token of the epoch is yielded by exactly one of the ``world_size`` ranks; a rank's
        last batch is smaller unless ``drop_last``. The order is fixed by (seed, epoch, rank);
        ``shuffle=False`` reads the rank's shards in file order without mixing. ``buffer_shards``
        shards are shuffled together and ``prefetch`` shards' worth of rows wait ready for the
        consumer (host memory: about ``2 * buffer_shards + prefetch`` shards). ``pin_memory``
        defaults to True on CUDA. Stopping early (``break``, ``close()``) stops the thread.
        """
        sizes = dict(batch_size=batch_size, buffer_shards=buffer_shards, prefetch=prefetch)
        for name, value in sizes.items():
            if value < 1:
                raise ValueError(f"{name} must be at least 1, not {value}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), not {rank}")
        pin = torch.device(device).type == "cuda" if pin_memory is None else pin_memory
        shard_ids = self.rank_shards(world_size, shuffle=shuffle, seed=seed, epoch=epoch)[rank]
        mixer = _seeded_generator(seed, epoch, 1, rank)
        blocks = _prefetched(
            lambda: self._token_blocks(shard_ids, shuffle, mixer, buffer_shards, pin), prefetch
        )
        batches = _rechunk(blocks, batch_size, drop_last, pin)
        return _to_device(batches, blocks, device, dtype or self.dtype, pin)

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
        """Shard ``i``'s activation vectors: every row in 1d, unmasked positions in 2d."""
        if self.layout == "1d":
            return self.load_shard(i, ["activations"])["activations"]
        shard = self.load_shard(i, ["activations", "mask"])
        return shard["activations"][shard["mask"]]

    def _token_blocks(
        self, shard_ids: list[int], shuffle: bool, mixer: torch.Generator, n_buffer: int, pin: bool
    ) -> Iterator[Float[Tensor, "rows d_model"]]:
        """Blocks of rows copied out of the memory-mapped shards, so that the disk is read by the
        thread that iterates them, not by the consumer."""
        rows = (self._token_rows(i) for i in shard_ids)
        if shuffle:
            return _shuffle_in_groups(_groups(rows, n_buffer), mixer, pin)
        return (r.pin_memory() if pin else r.clone() for r in rows)


def _seeded_generator(*key: int) -> torch.Generator:
    """A torch generator seeded from non-negative integers, e.g. (seed, epoch, purpose, rank)."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence(key).generate_state(1)[0]))


def _shuffle_in_groups(
    groups: Iterable[list[Float[Tensor, "rows d_model"]]], generator: torch.Generator, pin: bool
) -> Iterator[Float[Tensor, "rows d_model"]]:
    """Mix rows within each group of shards: copy the group into one buffer, then emit the buffer
    in a random order, a shard's worth of rows at a time. Copying a group is interleaved with
    emitting the one before, so reading the disk never holds the consumer up for a whole group."""
    emitting: Iterator[Tensor] = iter(())
    for group in groups:
        sizes = [len(piece) for piece in group]
        buffer = torch.empty((sum(sizes), *group[0].shape[1:]), dtype=group[0].dtype)
        for piece, rows in zip(group, buffer.split(sizes)):
            rows.copy_(piece)  # reads the shard from disk (or the page cache)
            yield from itertools.islice(emitting, 1)
        yield from emitting
        emitting = _permuted_chunks(buffer, len(group), generator, pin)
    yield from emitting


def _permuted_chunks(
    rows: Float[Tensor, "n d_model"], n_chunks: int, generator: torch.Generator, pin: bool
) -> Iterator[Float[Tensor, "chunk d_model"]]:
    for index in torch.randperm(len(rows), generator=generator).tensor_split(n_chunks):
        yield _gather(rows, index, pin)


def _groups(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while group := list(itertools.islice(iterator, size)):
        yield group


def _gather(rows: Float[Tensor, "n d"], index: Tensor, pin: bool) -> Float[Tensor, "k d"]:
    """``rows[index]``, written straight into pinned memory when ``pin``."""
    out = torch.empty((len(index), *rows.shape[1:]), dtype=rows.dtype, pin_memory=pin)
    return torch.index_select(rows, 0, index, out=out)


def _rechunk(
    blocks: Iterable[Float[Tensor, "rows d_model"]], batch_size: int, drop_last: bool, pin: bool
) -> Iterator[Float[Tensor, "batch d_model"]]:
    """Cut blocks of any length into batches of ``batch_size`` rows (views where possible)."""
    pending: list[Tensor] = []  # pieces of the next batch, fewer than batch_size rows together
    n_pending = 0
    for block in blocks:
        while len(block):
            piece, block = block[: batch_size - n_pending], block[batch_size - n_pending :]
            pending.append(piece)
            n_pending += len(piece)
            if n_pending == batch_size:
                yield _join(pending, pin)
                pending, n_pending = [], 0
    if pending and not drop_last:
        yield _join(pending, pin)


def _join(pieces: list[Tensor], pin: bool) -> Tensor:
    if len(pieces) == 1:
        return pieces[0]
    batch = torch.cat(pieces)
    return batch.pin_memory() if pin else batch


def _to_device(
    batches: Iterator[Tensor],
    source: Generator,
    device: str | torch.device,
    dtype: torch.dtype,
    pin: bool,
) -> Iterator[Float[Tensor, "batch d_model"]]:
    """Move each batch to ``device`` (asynchronously from pinned memory), then convert its dtype
    there. Closes ``source``, the prefetching generator, however the iteration ends."""
    try:
        for batch in batches:
            yield batch.to(device, non_blocking=pin).to(dtype)
    finally:
        source.close()


def _prefetched(produce: Callable[[], Iterable[T]], depth: int) -> Generator[T, None, None]:
    """Iterate ``produce()`` in a background thread, up to ``depth`` items ahead of the consumer.

    An exception in the thread is re-raised here. Closing this generator stops and joins the
    thread.
    """
    items: queue.Queue = queue.Queue(depth)
    stop = threading.Event()
    thread = threading.Thread(
        target=_produce_into, args=(produce, items, stop), name="lm_saes-cache-reader", daemon=True
    )
    thread.start()
    try:
        while (item := items.get()) is not None:  # None marks the end
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()
        thread.join()


class _Failed:
    """An exception raised in the producer thread, on its way to the consumer."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


def _produce_into(produce: Callable[[], Iterable[T]], items: queue.Queue, stop: threading.Event):
    """Put every item of ``produce()`` and then None, or the exception that stopped it."""
    try:
        for item in produce():
            if not _put_unless_stopped(items, item, stop):
                return
        _put_unless_stopped(items, None, stop)
    except BaseException as error:  # every failure must reach the consumer, or it would hang
        _put_unless_stopped(items, _Failed(error), stop)


def _put_unless_stopped(items: queue.Queue, item: object, stop: threading.Event) -> bool:
    """Put ``item``, waiting for room unless the consumer stops; False if it stopped."""
    while not stop.is_set():
        try:
            items.put(item, timeout=0.05)
            return True
        except queue.Full:
            continue
    return False
