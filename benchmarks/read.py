"""Benchmark the activation-cache reader against batches drawn from memory on the device.

Writes a synthetic 1d cache (bfloat16, ``--tokens`` x ``--d-model`` in ``--shards`` shards), reads
it once to warm the page cache, then alternates, ``--repeats`` times:

- reader: one epoch of ``open_cache(dir).batches(batch_size, device=device)``;
- in_memory: as many batches gathered by a random permutation from a tensor already on the
  device, the ceiling for any loader.

The consumer touches every batch (a sum) and CUDA is synchronized before each clock reading, so
asynchronous copies are counted. Prints one JSON object; ``ratio`` = reader / in_memory
throughput, from the median times (target: >= 0.9), with every repeat's ratio beside it.
``training_needs`` is the read rate training at ``--train-tokens-per-s`` (PERF.md's target for
one TopK SAE on an H100, 1.7M tokens/s) asks of the cache at this width and dtype, and
``reader_over_needs`` how many times over the reader delivers it. On a shared CPU, ``--threads 1``
keeps other processes' load from distorting torch's own parallel ops.

    python benchmarks/read.py --tokens 500000 --device cpu --threads 1 --repeats 9
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import Tensor

import lm_saes
from lm_saes.activations.manifest import (
    Manifest,
    ShardInfo,
    file_sha256,
    shard_name,
    write_manifest,
)
from lm_saes.activations.reader import ActivationCache, open_cache


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tokens", type=int, default=1_500_000, help="vectors in the cache")
    parser.add_argument("--d-model", type=int, default=768)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs of each kind")
    parser.add_argument("--reader-threads", type=int, help="the reader's gathering threads (default: its own, "
                        "0 on the CPU, 2 on CUDA)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's own choice)")
    parser.add_argument("--train-tokens-per-s", type=float, default=1.7e6,
                        help="training throughput whose reading needs are reported (PERF.md's target)")
    parser.add_argument("--dir", type=Path, help="write the cache here and keep it (default: temp)")
    return parser.parse_args()


def write_synthetic_cache(hook_dir: Path, n_tokens: int, d_model: int, n_shards: int) -> None:
    """A 1d bfloat16 cache of random activations, shard by shard, with a real manifest."""
    hook_dir.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(0)
    bounds = [n_tokens * i // n_shards for i in range(n_shards + 1)]
    shards = []
    for i, (start, stop) in enumerate(zip(bounds, bounds[1:])):
        n, path = stop - start, hook_dir / shard_name(i)
        acts = torch.randn(n, d_model, generator=generator).to(torch.bfloat16)
        save_file({"activations": acts, "tokens": torch.zeros(n, dtype=torch.int32)}, path)
        size, sha256 = path.stat().st_size, file_sha256(path)
        shards.append(ShardInfo(file=path.name, n_rows=n, bytes=size, sha256=sha256))
    manifest = Manifest(
        lm_saes_version=lm_saes.__version__,
        model="synthetic",
        hook=hook_dir.name,
        d_model=d_model,
        dtype="bfloat16",
        layout="1d",
        context_size=1024,
        n_tokens=n_tokens,
        n_contexts=-(-n_tokens // 1024),
        shards=shards,
        config={},
    )
    write_manifest(hook_dir, manifest)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def consume(batches: Iterable[Tensor], device: torch.device) -> tuple[int, int, float]:
    """Sum every batch on the device; return (batches, tokens, seconds)."""
    synchronize(device)
    start = time.perf_counter()
    total = torch.zeros((), dtype=torch.float32, device=device)
    n_batches = n_tokens = 0
    for batch in batches:
        total += batch.sum()  # reads the whole batch; a bf16 sum accumulates in fp32
        n_batches += 1
        n_tokens += len(batch)
    total.item()  # waits for every copy and sum
    synchronize(device)
    return n_batches, n_tokens, time.perf_counter() - start


def in_memory_batches(data: Tensor, batch_size: int, n_batches: int) -> Iterator[Tensor]:
    """``n_batches`` batches of a random permutation of ``data``'s rows, on ``data``'s device."""
    perm = torch.randperm(len(data), device=data.device)
    for i in range(n_batches):
        yield torch.index_select(data, 0, perm[i * batch_size : (i + 1) * batch_size])


def load_all(cache: ActivationCache, device: torch.device) -> Tensor:
    shards = [cache.load_shard(i, ["activations"]) for i in range(len(cache.shards))]
    return torch.cat([shard["activations"] for shard in shards]).to(device)


def rates(n_batches: int, n_tokens: int, seconds: float, bytes_per_token: int) -> dict:
    return {
        "seconds": round(seconds, 4),
        "batches_per_s": round(n_batches / seconds, 1),
        "tokens_per_s": round(n_tokens / seconds),
        "gb_per_s": round(n_tokens * bytes_per_token / seconds / 1e9, 3),
    }


def benchmark(hook_dir: Path, args: argparse.Namespace, device: torch.device) -> dict:
    """Alternate reader and in-memory epochs, so that other load on the machine hits both."""
    write_synthetic_cache(hook_dir, args.tokens, args.d_model, args.shards)
    cache = open_cache(hook_dir)
    read = dict(batch_size=args.batch_size, device=device, threads=args.reader_threads)
    n_batches, n_tokens, _ = consume(cache.batches(**read), device)  # warm
    data = load_all(cache, device)
    consume(in_memory_batches(data, args.batch_size, n_batches), device)  # warm up kernels
    reader, memory = [], []
    for epoch in range(1, args.repeats + 1):
        reader.append(consume(cache.batches(**read, epoch=epoch), device))
        memory.append(consume(in_memory_batches(data, args.batch_size, n_batches), device))
    reader_s = statistics.median(seconds for _, _, seconds in reader)
    memory_s = statistics.median(seconds for _, _, seconds in memory)
    bytes_per_token = args.d_model * cache.dtype.itemsize
    return {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "cpu_threads": torch.get_num_threads(),
        "n_tokens": n_tokens,
        "d_model": args.d_model,
        "dtype": str(cache.dtype),
        "n_shards": args.shards,
        "cache_gb": round(sum(s.bytes for s in cache.shards) / 1e9, 3),
        "batch_size": args.batch_size,
        "n_batches": n_batches,
        "repeats": args.repeats,
        "reader": rates(n_batches, n_tokens, reader_s, bytes_per_token),
        "in_memory": rates(n_batches, n_tokens, memory_s, bytes_per_token),
        "reader_threads": args.reader_threads,
        "ratio": round(memory_s / reader_s, 3),
        "ratio_per_repeat": [round(m[2] / r[2], 3) for r, m in zip(reader, memory)],
        "target": 0.9,
        "training_needs": {"tokens_per_s": args.train_tokens_per_s,
                           "gb_per_s": round(args.train_tokens_per_s * bytes_per_token / 1e9, 3)},
        "reader_over_needs": round(n_tokens / reader_s / args.train_tokens_per_s, 3),
    }


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    use_cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    device = torch.device("cuda" if use_cuda else "cpu")
    if args.dir is not None:
        result = benchmark(args.dir, args, device)
    else:
        with tempfile.TemporaryDirectory(prefix="lm_saes-read-bench-") as tmp:
            result = benchmark(Path(tmp) / "blocks.0.hook_resid_post", args, device)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
