"""The activation-cache reader on real safetensors caches: coverage, ranks, order, bad inputs."""

from __future__ import annotations

import itertools
import json
import threading

import pytest
import torch

from lm_saes.activations import reader
from lm_saes.activations.reader import THREAD_NAME, ActivationCache, _Group, _seeded_generator, open_cache
from lm_saes.errors import CacheError

D = 8
SHARD_ROWS = [300, 40, 500, 120, 300, 260]  # uneven; 500 > 300 exercises the buffer swap


def reader_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(THREAD_NAME)]


def epoch_ids(cache: ActivationCache, token_ids, **kwargs) -> torch.Tensor:
    return torch.cat([token_ids(b) for b in cache.batches(64, **kwargs)])


@pytest.fixture
def cache_1d(tmp_path, write_cache):
    written = write_cache(tmp_path / "hook", "1d", SHARD_ROWS, D)
    return open_cache(written.hook_dir), written


@pytest.mark.parametrize("buffer_shards", [1, 3])
def test_epoch_yields_every_token_exactly_once(cache_1d, token_ids, buffer_shards):
    cache, written = cache_1d
    batches = list(cache.batches(64, buffer_shards=buffer_shards))
    ids = torch.cat([token_ids(b) for b in batches])
    assert torch.equal(ids.sort().values, written.token_ids)
    assert [tuple(b.shape) for b in batches[:-1]] == [(64, D)] * (len(batches) - 1)
    assert batches[-1].shape == (sum(SHARD_ROWS) % 64, D)
    assert all(b.dtype == torch.bfloat16 and b.is_contiguous() for b in batches)
    assert not torch.equal(ids, written.token_ids)  # shuffled
    shard_of = torch.bucketize(ids[:64], torch.tensor(SHARD_ROWS).cumsum(0), right=True)
    assert len(shard_of.unique()) == min(buffer_shards, 3)  # a batch mixes the buffered shards


def reference_epoch(cache: ActivationCache, batch_size: int, *, seed=0, epoch=0, rank=0, world_size=1,
                    buffer_shards=4, shuffle=True) -> list[torch.Tensor]:
    """The token ids of each batch ``batches`` must yield, built the plain way: each group of
    ``buffer_shards`` shards concatenated and permuted by the (seed, epoch, rank) generator, the
    groups one after the other, cut into batches; within a batch, the rows of each shard of each
    group together, in the permutation's order."""
    ends = torch.tensor(SHARD_ROWS).cumsum(0)
    shard_ids = cache.rank_shards(world_size, shuffle=shuffle, seed=seed, epoch=epoch)[rank]
    mixer = _seeded_generator(seed, epoch, 1, rank)
    ids, shard_place = [], []  # every row of the epoch in stream order, and its (group, shard) rank
    for first in range(0, len(shard_ids), buffer_shards):
        group = shard_ids[first : first + buffer_shards]
        rows = torch.cat([torch.arange(ends[i] - SHARD_ROWS[i], ends[i]) for i in group])
        place = torch.cat([torch.full((SHARD_ROWS[i],), first + j) for j, i in enumerate(group)])
        order = torch.randperm(len(rows), generator=mixer) if shuffle else torch.arange(len(rows))
        ids.append(rows[order])
        shard_place.append(place[order])
    return [batch[torch.argsort(place, stable=True)]
            for batch, place in zip(torch.cat(ids).split(batch_size), torch.cat(shard_place).split(batch_size))]


@pytest.mark.parametrize("batch_size, buffer_shards, world_size, shuffle, threads", [
    (64, 4, 1, True, 3), (64, 4, 1, True, 0), (333, 3, 1, True, 2), (100, 1, 1, True, 1), (97, 2, 2, True, 3),
    (128, 4, 1, False, 2),
])
def test_stream_is_the_plain_permutation_of_each_group(cache_1d, token_ids, batch_size, buffer_shards,
                                                       world_size, shuffle, threads):
    """The gathering (by threads, or by the consumer) reproduces the reference stream exactly."""
    cache, _ = cache_1d
    for rank in range(world_size):
        kwargs = dict(seed=5, epoch=2, rank=rank, world_size=world_size, buffer_shards=buffer_shards, shuffle=shuffle)
        streamed = [token_ids(b) for b in cache.batches(batch_size, threads=threads, **kwargs)]
        expected = reference_epoch(cache, batch_size, **kwargs)
        assert len(streamed) == len(expected)
        assert all(torch.equal(a, b) for a, b in zip(streamed, expected))


@pytest.mark.parametrize("fits_in_memory", [True, False])
def test_a_cache_that_fits_in_memory_stays_mapped_between_epochs(tmp_path, write_cache, token_ids, monkeypatch,
                                                                 fits_in_memory):
    written = write_cache(tmp_path / "hook", "1d", SHARD_ROWS, D)
    cache = open_cache(written.hook_dir)
    if not fits_in_memory:
        monkeypatch.setattr(reader, "physical_memory", lambda: 2 * sum(s.bytes for s in cache.shards) - 1)
    mapped = []
    load = cache.load_shard
    monkeypatch.setattr(cache, "load_shard", lambda i, names=None: mapped.append(i) or load(i, names))
    epochs = [torch.cat([token_ids(b) for b in cache.batches(64, epoch=e)]) for e in range(3)]
    assert all(torch.equal(ids.sort().values, written.token_ids) for ids in epochs)
    assert sorted(mapped) == sorted(range(len(SHARD_ROWS)) if fits_in_memory else 3 * list(range(len(SHARD_ROWS))))


def test_without_shuffle_tokens_come_in_file_order(cache_1d, token_ids):
    cache, written = cache_1d
    assert torch.equal(epoch_ids(cache, token_ids, shuffle=False), written.token_ids)


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_are_disjoint_and_complete(cache_1d, token_ids, world_size):
    cache, written = cache_1d
    ranks = range(world_size)
    per_rank = [epoch_ids(cache, token_ids, rank=r, world_size=world_size, epoch=1) for r in ranks]
    assert torch.equal(torch.cat(per_rank).sort().values, written.token_ids)  # disjoint, complete
    assert cache.batches_per_rank(64, world_size, epoch=1) == [-(-len(i) // 64) for i in per_rank]
    sizes = [len(ids) for ids in per_rank]
    assert max(sizes) - min(sizes) <= max(SHARD_ROWS)  # balanced by rows


def test_order_is_fixed_by_seed_and_epoch(cache_1d, token_ids):
    cache, _ = cache_1d
    first = epoch_ids(cache, token_ids, seed=3, epoch=0)
    assert torch.equal(first, epoch_ids(cache, token_ids, seed=3, epoch=0))
    assert not torch.equal(first, epoch_ids(cache, token_ids, seed=3, epoch=1))
    assert not torch.equal(first, epoch_ids(cache, token_ids, seed=4, epoch=0))


def test_dtype_is_converted(cache_1d, token_ids):
    cache, written = cache_1d
    batch = next(iter(cache.batches(64, dtype=torch.float32, shuffle=False)))
    assert batch.dtype == torch.float32 and batch.shape == (64, D)
    assert torch.equal(token_ids(batch), written.token_ids[:64])


def test_drop_last_drops_the_partial_batch(cache_1d):
    cache, _ = cache_1d
    batches = list(cache.batches(64, drop_last=True))
    assert len(batches) == sum(SHARD_ROWS) // 64 == cache.batches_per_rank(64, drop_last=True)[0]
    assert all(b.shape == (64, D) for b in batches)


def test_2d_cache_yields_only_unmasked_tokens(tmp_path, write_cache, token_ids):
    written = write_cache(tmp_path / "hook", "2d", [30, 7, 25, 12], D, context_size=5)
    cache = open_cache(written.hook_dir)
    batches = [b for rank in (0, 1) for b in cache.batches(16, world_size=2, rank=rank)]
    ids = torch.cat([token_ids(b) for b in batches])
    assert torch.equal(ids.sort().values, written.token_ids)  # no padding (ids < 0), no repeats
    assert sum(cache.batches_per_rank(16, 2)) == len(batches)
    assert cache.load_shard(0)["activations"].shape == (30, 5, D)


def test_cache_properties(cache_1d):
    cache, written = cache_1d
    assert (cache.d_model, cache.layout, cache.dtype) == (D, "1d", torch.bfloat16)
    assert len(cache) == cache.n_tokens == sum(SHARD_ROWS)
    assert [s.n_rows for s in cache.shards] == SHARD_ROWS
    assert set(cache.load_shard(2)) == {"activations", "tokens"}


def test_unfinished_cache_is_refused(tmp_path, write_cache):
    written = write_cache(tmp_path / "hook", "1d", [10, 10], D)
    (written.hook_dir / "manifest.json").unlink()
    with pytest.raises(CacheError, match="did not finish.*resume"):
        open_cache(written.hook_dir)


def test_truncated_shard_is_named(tmp_path, write_cache):
    written = write_cache(tmp_path / "hook", "1d", [10, 10], D)
    shard = written.hook_dir / written.manifest.shards[1].file
    shard.write_bytes(shard.read_bytes()[:-7])
    with pytest.raises(CacheError, match=f"{shard.name}.*regenerate"):
        open_cache(written.hook_dir)


def test_missing_shard_is_named(tmp_path, write_cache):
    written = write_cache(tmp_path / "hook", "1d", [10, 10], D)
    (written.hook_dir / written.manifest.shards[0].file).unlink()
    with pytest.raises(CacheError, match="shard-00000.safetensors is missing"):
        open_cache(written.hook_dir)


def test_corrupt_bytes_fail_the_checksum(tmp_path, write_cache):
    written = write_cache(tmp_path / "hook", "1d", [10, 10], D)
    open_cache(written.hook_dir, verify="sha256")  # intact
    shard = written.hook_dir / written.manifest.shards[0].file
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF
    shard.write_bytes(bytes(data))
    open_cache(written.hook_dir)  # same size: passes the default check
    with pytest.raises(CacheError, match=f"{shard.name}.*sha256"):
        open_cache(written.hook_dir, verify="sha256")


def test_garbage_shard_fails_in_the_consumer_not_the_thread(tmp_path, write_cache):
    written = write_cache(tmp_path / "hook", "1d", [100, 100, 100], D)
    shard = written.hook_dir / written.manifest.shards[2].file
    shard.write_bytes(bytes(shard.stat().st_size))  # zeros: right size, not safetensors
    cache = open_cache(written.hook_dir)
    with pytest.raises(CacheError, match=f"{shard.name} is not valid safetensors"):
        cache.load_shard(2)
    with pytest.raises(CacheError, match=shard.name):
        list(cache.batches(16, shuffle=False, threads=2))
    assert not reader_threads()


def test_shard_that_disagrees_with_the_manifest(tmp_path, write_cache):
    written = write_cache(tmp_path / "hook", "1d", [10, 10], D)
    wrong = written.manifest.model_copy(update={"d_model": D + 1})
    cache = ActivationCache(written.hook_dir, wrong)
    with pytest.raises(CacheError, match=r"shard-00000.safetensors: 'activations' .* \(10, 9\)"):
        cache.load_shard(0)


def test_error_opening_a_shard_reaches_the_consumer(cache_1d, monkeypatch):
    cache, _ = cache_1d
    load = ActivationCache._token_rows

    def fail_on_third_shard(self, i):
        if i == 2:
            raise RuntimeError("disk on fire")
        return load(self, i)

    monkeypatch.setattr(ActivationCache, "_token_rows", fail_on_third_shard)
    with pytest.raises(RuntimeError, match="disk on fire"):
        list(cache.batches(64, shuffle=False, threads=2))
    assert not reader_threads()


def test_error_in_a_gathering_thread_reaches_the_consumer(cache_1d, monkeypatch):
    cache, _ = cache_1d
    gather, calls = _Group.gather_into, itertools.count()

    def fail_on_fifth_batch(self, rows, out):
        if next(calls) == 4:
            raise RuntimeError("disk on fire")
        return gather(self, rows, out)

    monkeypatch.setattr(_Group, "gather_into", fail_on_fifth_batch)
    with pytest.raises(RuntimeError, match="disk on fire"):
        list(cache.batches(64, shuffle=False, threads=2))
    assert not reader_threads()


def test_stopping_early_stops_the_thread(cache_1d):
    cache, _ = cache_1d
    for _ in cache.batches(16, prefetch=1, threads=3):
        assert 1 <= len(reader_threads()) <= 3
        break
    assert not reader_threads()
    for _ in cache.batches(16):
        assert not reader_threads()  # on the CPU the consumer gathers by default
    batches = cache.batches(16, threads=2)
    assert not reader_threads()  # nothing starts before the first batch is asked for
    next(batches)
    batches.close()
    assert not reader_threads()


def test_too_many_ranks_for_the_shards(cache_1d):
    cache, _ = cache_1d
    with pytest.raises(CacheError, match="smaller shard_size_mb"):
        cache.batches(64, world_size=len(SHARD_ROWS) + 1)


def test_stages_verify_checksums_when_they_read_the_whole_cache(tmp_path, write_cache):
    written = write_cache(tmp_path / "hook", "1d", [10, 10], D)
    manifest = json.loads((written.hook_dir / "manifest.json").read_text())
    manifest["shards"][1]["sha256"] = "0" * 64  # an edited manifest
    (written.hook_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CacheError, match="shard-00001.safetensors does not match the sha256"):
        open_cache(written.hook_dir, verify="auto", reads=20)  # reads all 20 vectors: checksums
    with pytest.raises(CacheError, match="shard-00001.safetensors does not match the sha256"):
        open_cache(written.hook_dir, verify="auto")  # reads unknown: the whole cache
    assert open_cache(written.hook_dir, verify="auto", reads=5).n_tokens == 20  # a fraction: sizes only
