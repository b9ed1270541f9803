"""Generation throughput beside its two ceilings, measured in one run; prints one JSON object.

- forward ceiling: the model's own forward to the hook (``run_to_hooks``, early stop) on
  batches of the same shape, nothing written;
- disk ceiling: safetensors bytes of bf16 shards of the same size written and fsynced;
- generate: ``lm_saes.generate`` over real text, the forward/write loop timed alone.

Target (PERF.md): generate >= 80% of min(forward, disk). Example:
    python benchmarks/generate.py --device cuda --preset gpt2-small
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save as safetensors_bytes

from lm_saes.activations.generate import generate
from lm_saes.activations.manifest import write_atomic
from lm_saes.config import load_config, GenerateConfig, ModelConfig
from lm_saes.models.backend import TORCH_DTYPES, load_language_model, resolve_device

PRESETS = {  # n_layer, d_model, n_head, hook layer
    "tiny": (4, 128, 4, 1),
    "gpt2-small": (12, 768, 12, 6),
}


def build_model(root: Path, preset: str, ctx: int) -> tuple[Path, Path]:
    """A random-init GPT-2 of the preset's shape with a BPE tokenizer, and a jsonl of real text."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from lm_saes.models.corpus import load_corpus, write_jsonl
    from lm_saes.models.tokenizer import train_bpe

    n_layer, d_model, n_head, _ = PRESETS[preset]
    docs = load_corpus("shakespeare")
    tokenizer = train_bpe(docs[:2000], vocab_size=4096)
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=ctx, n_embd=d_model, n_layer=n_layer, n_head=n_head,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    model_dir, data = root / "model", root / "docs.jsonl"
    GPT2LMHeadModel(config).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    write_jsonl(docs * 8, data)  # repeated so a GPU run has enough tokens
    return model_dir, data


def time_forward(cfg: GenerateConfig, iters: int) -> float:
    """Tokens/s of the model's forward to the hooks, output cast to the cache dtype."""
    lm = load_language_model(cfg.model)
    tokens = torch.randint(1, len(lm.tokenizer), (cfg.batch_size, cfg.data.context_size), device=lm.device)
    out_dtype = TORCH_DTYPES[cfg.dtype]
    for _ in range(3):
        lm.run_to_hooks(tokens, cfg.hooks, out_dtype=out_dtype)
    _sync(lm.device)
    start = time.perf_counter()
    for _ in range(iters):
        lm.run_to_hooks(tokens, cfg.hooks, out_dtype=out_dtype)
    _sync(lm.device)
    return iters * tokens.numel() / (time.perf_counter() - start)


def time_disk(directory: Path, d_model: int, n_hooks: int, shard_tokens: int, shards: int) -> float:
    """Tokens/s the disk absorbs as bf16 shards (serialize + write + fsync), for all hooks."""
    acts = torch.randn(shard_tokens, d_model).to(torch.bfloat16)
    start = time.perf_counter()
    for i in range(shards):
        write_atomic(directory / f"disk-{i}.safetensors", safetensors_bytes({"activations": acts}))
    seconds = time.perf_counter() - start
    for i in range(shards):
        (directory / f"disk-{i}.safetensors").unlink()
    return shards * shard_tokens / seconds / n_hooks


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=PRESETS, default="tiny")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--model-dtype", default="float32", choices=TORCH_DTYPES)
    parser.add_argument("--ctx", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=400_000)
    parser.add_argument("--shard-mb", type=float, default=64)
    parser.add_argument("--dir", default=os.environ.get("BENCH_DIR"), help="where to write (a real disk)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        model_dir, data = build_model(root, args.preset, args.ctx)
        hook = f"blocks.{PRESETS[args.preset][3]}.hook_resid_post"
        cfg = load_config(GenerateConfig, None, [
            f"model.name={model_dir}", f"model.device={args.device}", f"model.dtype={args.model_dtype}",
            f"data.path={data}", f"data.context_size={args.ctx}", f"data.max_tokens={args.tokens}",
            f'hooks=["{hook}"]', f"output_dir={root / 'cache'}", f"batch_size={args.batch}",
            f"shard_size_mb={args.shard_mb}", "progress=false", "disk_headroom_gb=0",
        ])
        forward_tps = time_forward(cfg, iters=max(5, args.tokens // (args.batch * args.ctx) // 4))
        d_model = PRESETS[args.preset][1]
        shard_tokens = int(args.shard_mb * 2**20 / (2 * d_model))
        disk_tps = time_disk(root, d_model, len(cfg.hooks), shard_tokens, shards=4)
        result = generate(cfg)
        context_tokens = (args.tokens // args.ctx) * args.ctx  # model input tokens, as the forward counts
        gen_tps = context_tokens / result.loop_seconds
    ceiling = min(forward_tps, disk_tps)
    print(json.dumps({
        "benchmark": "generate", "device": str(resolve_device(args.device)),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "preset": args.preset, "model_dtype": args.model_dtype, "ctx": args.ctx, "batch": args.batch,
        "context_tokens": context_tokens,
        "forward_tokens_per_s": round(forward_tps), "disk_tokens_per_s": round(disk_tps),
        "generate_tokens_per_s": round(gen_tps), "generate_over_ceiling": round(gen_tps / ceiling, 3),
        "target": 0.8, "whole_call_seconds": round(result.seconds, 2),
    }))


if __name__ == "__main__":
    main()
