"""Feature analysis throughput beside the cost of producing its inputs; prints one JSON object.

On the same 2d cache of real text, timed separately (CUDA synchronized around each):

- forward: the model's forward to the hook (``run_to_hooks``, stops early) over every context;
- encode: one pass reading the cache and encoding every context with the dictionary
  (``Dictionary.encode``, dense activations);
- encode_codes: the same pass as analysis encodes (``encode_codes``: for TopK the selection
  alone, without scattering it into dense activations);
- analysis: ``analyze_features`` (pass 1 statistics, pass 2 band samples replaying pass 1's
  codes, decoder statistics);
- analysis_one_pass: the same without band samples (``n_bands = 0``), i.e. pass 1 alone;
- documents: turning the results into the JSON-able feature documents (Python, CPU).

``analysis_over_encode`` = analysis / encode seconds (target: <= 1.5; with ``--repeats`` the
median of alternating runs, each run's ratio beside it); ``ratio`` = analysis / (forward +
encode); ``ratio_with_documents`` adds the documents' time; ``ratio_one_pass`` is pass 1 alone.

The model is a random-init GPT-2 of the preset's shape (throughput does not depend on trained
weights), the dictionary a random TopK of ``--d-sae`` features. On a shared CPU, ``--threads 1``
keeps other processes' load from distorting the timings.

    python benchmarks/analyze.py --threads 1 --repeats 3   # CPU: tiny preset, d_sae 4096
    python benchmarks/analyze.py --device cuda --preset gpt2-small --d-sae 24576 --tokens 1048576 --batch-size 64
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from lm_saes.activations.generate import generate
from lm_saes.activations.reader import open_cache
from lm_saes.analysis import analyze_features
from lm_saes.analysis.codes import encode_codes
from lm_saes.analysis.contexts import context_batches
from lm_saes.config import AnalyzeConfig, GenerateConfig, ModelConfig, TopKConfig, load_config
from lm_saes.data.framing import special_ids
from lm_saes.data.tokens import build_contexts, load_texts
from lm_saes.dictionaries import build_dictionary
from lm_saes.models.backend import load_language_model, resolve_device

PRESETS = {  # n_layer, d_model, n_head, hook layer
    "tiny": (4, 256, 4, 2),
    "gpt2-small": (12, 768, 12, 6),
}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    p.add_argument("--d-sae", type=int, default=4096)
    p.add_argument("--k", type=int, default=32, help="TopK active features per token")
    p.add_argument("--tokens", type=int, default=65536, help="context tokens in the cache")
    p.add_argument("--ctx", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=16, help="contexts per batch (all three timings)")
    p.add_argument("--top-k", type=int, default=20)
    p.add_argument("--window", type=int, default=8)
    p.add_argument("--n-bands", type=int, default=10)
    p.add_argument("--per-band", type=int, default=5)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's own choice)")
    p.add_argument("--repeats", type=int, default=1, help="alternating timed runs of encode and analysis")
    p.add_argument("--dir", type=Path, help="work here and keep the files (default: a temp dir)")
    return p.parse_args()


def build_inputs(root: Path, args: argparse.Namespace) -> tuple[GenerateConfig, Path, str]:
    """A random GPT-2 with a BPE tokenizer, a 2d cache of real text at its hook, a TopK dictionary."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from lm_saes.models.corpus import load_corpus, write_jsonl
    from lm_saes.models.tokenizer import train_bpe

    n_layer, d_model, n_head, layer = PRESETS[args.preset]
    docs = load_corpus("shakespeare")
    tokenizer = train_bpe(docs[:2000], vocab_size=4096)
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=args.ctx, n_embd=d_model, n_layer=n_layer,
                        n_head=n_head, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    model_dir, data = root / "model", root / "docs.jsonl"
    GPT2LMHeadModel(config).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    write_jsonl(docs * 8, data)
    hook = f"blocks.{layer}.hook_resid_post"
    cfg = load_config(GenerateConfig, None, [
        f"model.name={model_dir}", f"model.device={args.device}", f"data.path={data}",
        f"data.context_size={args.ctx}", f"data.max_tokens={args.tokens}", f'hooks=["{hook}"]',
        f"output_dir={root / 'cache'}", "layout=2d", f"batch_size={args.batch_size}", "progress=false",
        "disk_headroom_gb=0",
    ])
    generate(cfg)
    dictionary = build_dictionary(TopKConfig(d_sae=args.d_sae, k=args.k), d_model, d_model)
    dictionary.save(root / "dictionary")
    return cfg, root / "cache" / hook, hook


def timed(fn, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def benchmark(root: Path, args: argparse.Namespace) -> dict:
    device = resolve_device(args.device)
    gen_cfg, cache_dir, hook = build_inputs(root, args)
    lm = load_language_model(ModelConfig(name=gen_cfg.model.name, device=args.device))
    contexts = build_contexts(load_texts(gen_cfg.data), lm.tokenizer, gen_cfg.data, lm.pad_token_id)
    cache = open_cache(cache_dir)
    from lm_saes.dictionaries import Dictionary

    dictionary = Dictionary.from_pretrained(root / "dictionary", device=device)

    def forward() -> None:
        for tokens in contexts.tokens.split(args.batch_size):
            lm.run_to_hooks(tokens.long(), [hook], out_dtype=torch.bfloat16)

    @torch.inference_mode()
    def encode() -> None:
        for batch in context_batches(cache, args.batch_size, device, special_ids(lm.tokenizer)):
            dictionary.encode(batch.activations.flatten(0, 1))

    @torch.inference_mode()
    def codes() -> None:
        for batch in context_batches(cache, args.batch_size, device, special_ids(lm.tokenizer)):
            encode_codes(dictionary, batch)

    cfg = AnalyzeConfig(dictionary=root / "dictionary", cache=cache_dir, top_k=args.top_k, window=args.window,
                        n_bands=args.n_bands, per_band=args.per_band, batch_size=args.batch_size,
                        device=str(device), progress=False)
    docs: list = []

    def analysis(cfg: AnalyzeConfig = cfg) -> None:
        docs.append(analyze_features(cfg, dictionary, cache, lm.tokenizer, lm.bridge.W_U.detach())[1])

    timed(forward, device), timed(encode, device)  # warm up kernels and the page cache
    forward_s = timed(forward, device)
    runs = [(timed(encode, device), timed(codes, device), timed(analysis, device)) for _ in range(args.repeats)]
    encode_s, codes_s, analysis_s = (statistics.median(run[i] for run in runs) for i in range(3))
    documents_s = timed(lambda: sum(1 for _ in docs[-1]), device)
    one_pass_s = timed(lambda: analysis(cfg.model_copy(update={"n_bands": 0})), device)
    n_tokens = cache.n_tokens
    return {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "cpu_threads": torch.get_num_threads(), "torch": torch.__version__,
        "preset": args.preset, "d_model": cache.d_model, "hook": hook, "d_sae": args.d_sae, "k": args.k,
        "n_tokens": n_tokens, "ctx": args.ctx, "batch_size": args.batch_size,
        "top_k": args.top_k, "window": args.window, "n_bands": args.n_bands, "per_band": args.per_band,
        "repeats": args.repeats,
        "seconds": {k: round(v, 3) for k, v in dict(
            forward=forward_s, encode=encode_s, encode_codes=codes_s, analysis=analysis_s,
            analysis_one_pass=one_pass_s, documents=documents_s).items()},
        "tokens_per_s": {k: round(n_tokens / v) for k, v in dict(
            forward=forward_s, encode=encode_s, encode_codes=codes_s, analysis=analysis_s,
            analysis_one_pass=one_pass_s).items()},
        "ratio": round(analysis_s / (forward_s + encode_s), 3),
        "ratio_with_documents": round((analysis_s + documents_s) / (forward_s + encode_s), 3),
        "ratio_one_pass": round(one_pass_s / (forward_s + encode_s), 3),
        "analysis_over_encode": round(analysis_s / encode_s, 3),
        "analysis_over_encode_per_repeat": [round(a / e, 3) for e, _, a in runs],
        "analysis_over_encode_codes": round(analysis_s / codes_s, 3),
        "target_analysis_over_encode": 1.5,
    }


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.dir is not None:
        result = benchmark(args.dir, args)
    else:
        with tempfile.TemporaryDirectory(prefix="lm_saes-analyze-bench-") as tmp:
            result = benchmark(Path(tmp), args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
