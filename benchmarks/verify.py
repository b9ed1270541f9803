"""What verifying a cache's checksums costs, beside the training it protects; prints one JSON object.

On a synthetic 1d cache of the quick start's shape (about 1M tokens of width 128, bf16, 64 MB
shards, like ``examples/generate.toml``), timed in one run:

- size: ``open_cache(verify="size")``, every shard's existence and size;
- sha256: ``open_cache(verify="sha256")``, the checksums too, hashed in ``HASH_THREADS`` threads;
- sha256_one_thread: the same shards hashed one after another;
- train: ``lm-saes train`` with ``examples/train_topk.toml``'s settings on that cache (its
  checksums included: the stage reads the whole cache, so it verifies them).

``seconds_per_gb`` is sha256 / cache GB and ``share_of_train`` sha256 / train. The shards were
just written, so they are read from the page cache; from a cold disk the hash reads at the disk's
speed, the same read the first epoch of training would otherwise pay.

    python benchmarks/verify.py                 # quick-start shape, CPU
    python benchmarks/verify.py --tokens 4194304 --d-model 768 --device cuda --skip-train
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from lm_saes.activations.manifest import HASH_THREADS, Manifest, ShardInfo, file_sha256, shard_name, write_manifest
from lm_saes.activations.reader import open_cache
from lm_saes.config import TrainConfig, load_config
from lm_saes.training.train import train

ROOT = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokens", type=int, default=1_000_000)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--shard-mb", type=float, default=64.0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--skip-train", action="store_true", help="time the checks only")
    p.add_argument("--dir", type=Path, help="work here and keep the files (default: a temp dir)")
    return p.parse_args()


def write_cache(hook_dir: Path, n_tokens: int, d_model: int, shard_mb: float) -> Manifest:
    """Random bf16 activations in shards of at most ``shard_mb`` MB, with a real manifest."""
    hook_dir.mkdir(parents=True, exist_ok=True)
    rows = max(1, int(shard_mb * 2**20) // (2 * d_model + 4))
    generator = torch.Generator().manual_seed(0)
    shards = []
    for i, start in enumerate(range(0, n_tokens, rows)):
        n = min(rows, n_tokens - start)
        tensors = {"activations": torch.randn(n, d_model, generator=generator).to(torch.bfloat16),
                   "tokens": torch.randint(0, 4096, (n,), generator=generator, dtype=torch.int32)}
        path = hook_dir / shard_name(i)
        save_file(tensors, path)
        shards.append(ShardInfo(file=path.name, n_rows=n, bytes=path.stat().st_size, sha256=file_sha256(path)))
    manifest = Manifest(lm_saes_version="bench", model="synthetic", hook="blocks.1.hook_resid_post",
                        d_model=d_model, dtype="bfloat16", layout="1d", context_size=128, n_tokens=n_tokens,
                        n_contexts=-(-n_tokens // 127), shards=shards, config={})
    write_manifest(hook_dir, manifest)
    return manifest


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def benchmark(root: Path, args: argparse.Namespace) -> dict:
    hook_dir = root / "cache" / "blocks.1.hook_resid_post"
    manifest = write_cache(hook_dir, args.tokens, args.d_model, args.shard_mb)
    gb = sum(s.bytes for s in manifest.shards) / 1e9
    size_s = timed(lambda: open_cache(hook_dir, verify="size"))
    sha_s = timed(lambda: open_cache(hook_dir, verify="sha256"))
    one_thread_s = timed(lambda: [file_sha256(hook_dir / s.file) for s in manifest.shards])
    result = {
        "cache_gb": round(gb, 3), "shards": len(manifest.shards), "hash_threads": HASH_THREADS,
        "size_seconds": round(size_s, 4), "sha256_seconds": round(sha_s, 3),
        "sha256_one_thread_seconds": round(one_thread_s, 3), "seconds_per_gb": round(sha_s / gb, 3),
        "seconds_per_gb_one_thread": round(one_thread_s / gb, 3),
    }
    if not args.skip_train:
        cfg = load_config(TrainConfig, ROOT / "examples" / "train_topk.toml", [
            f"cache={hook_dir}", f"output_dir={root / 'topk'}", f"device={args.device}", "progress=false",
            "overwrite=true",
        ])
        train_s = timed(lambda: train(cfg))
        result.update(train_seconds=round(train_s, 2), share_of_train=round(sha_s / train_s, 4),
                      train_tokens=cfg.total_tokens)
    return result


def main() -> None:
    args = parse_args()
    if args.dir is not None:
        print(json.dumps(benchmark(args.dir, args), indent=2))
        return
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(benchmark(Path(tmp), args), indent=2))


if __name__ == "__main__":
    main()
