"""A real 2d cache (some contexts padded, several shards), a small trained dictionary, and the
brute-force truth: every context encoded at once, straight from the safetensors files."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import pytest
import torch
from safetensors.torch import load_file

from lm_saes.activations.generate import generate
from lm_saes.activations.manifest import read_manifest
from lm_saes.config import GenerateConfig, TrainConfig, load_config
from lm_saes.dictionaries import Dictionary
from lm_saes.models.corpus import write_jsonl
from lm_saes.training.train import train

HOOK = "blocks.1.hook_resid_post"
CTX = 24
N_CONTEXTS = 120
D_SAE = 96


class Truth(NamedTuple):
    acts: torch.Tensor  # [n, ctx, d_sae] float32, zero where not analyzed
    tokens: torch.Tensor  # [n, ctx] int64
    context_ids: torch.Tensor  # [n]
    valid: torch.Tensor  # [n, ctx] bool (mask)
    analyzed: torch.Tensor  # [n, ctx] bool (mask and not BOS)


@pytest.fixture(scope="session")
def varied_docs_file(tmp_path_factory, text_docs) -> Path:
    """Every third document cut short, so that some unpacked contexts end in padding."""
    docs = [doc if i % 3 else doc[: 10 + 9 * (i % 7)] for i, doc in enumerate(text_docs)]
    path = tmp_path_factory.mktemp("analysis-data") / "docs.jsonl"
    write_jsonl(docs, path)
    return path


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory, model_dir, varied_docs_file) -> Path:
    root = tmp_path_factory.mktemp("analysis-cache")
    generate(load_config(GenerateConfig, None, [
        f"model.name={model_dir}", f"data.path={varied_docs_file}", f"data.context_size={CTX}",
        "data.packing=false", f"data.max_tokens={CTX * N_CONTEXTS}", f'hooks=["{HOOK}"]',
        f"output_dir={root}", "layout=2d", "shard_size_mb=0.05", "batch_size=32",
        "progress=false", "disk_headroom_gb=0",
    ]))
    return root / HOOK


@pytest.fixture(scope="session")
def dictionary_dir(tmp_path_factory, cache_dir) -> Path:
    out = tmp_path_factory.mktemp("analysis-dict") / "sae"
    train(load_config(TrainConfig, None, [
        f"cache={cache_dir}", f"output_dir={out}", "total_tokens=6144", "batch_size=256", "lr=3e-3",
        "lr_warmup_steps=5", "progress=false", "checkpoint_every=0", "device=cpu",
        "dictionary.kind=topk", f"dictionary.d_sae={D_SAE}", "dictionary.k=4",
    ]))
    return out


@pytest.fixture(scope="session")
def tokenizer(model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)


@pytest.fixture(scope="session")
def W_U(model_dir) -> torch.Tensor:
    """The unembedding read straight from the Hugging Face model: [d_model, vocab]."""
    from transformers import GPT2LMHeadModel

    return GPT2LMHeadModel.from_pretrained(model_dir).lm_head.weight.detach().T.contiguous()


@pytest.fixture(scope="session")
def truth(cache_dir, dictionary_dir, tokenizer) -> Truth:
    manifest = read_manifest(cache_dir)
    shards = [load_file(cache_dir / s.file) for s in manifest.shards]
    x = torch.cat([s["activations"] for s in shards]).float()  # [n, ctx, d]
    tokens = torch.cat([s["tokens"] for s in shards]).long()
    valid = torch.cat([s["mask"] for s in shards])
    analyzed = valid & (tokens != tokenizer.bos_token_id)
    with torch.no_grad():
        acts = Dictionary.from_pretrained(dictionary_dir).encode(x.view(-1, x.shape[-1])).view(*x.shape[:2], -1)
    acts = acts * analyzed[..., None]
    context_ids = torch.cat([s["context_ids"] for s in shards])
    return Truth(acts, tokens, context_ids, valid, analyzed)
