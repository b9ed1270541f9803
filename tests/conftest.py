"""Shared fixtures: a small real model directory and a real text dataset, built once a session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TEST_D_MODEL = 32
TEST_LAYERS = 3


@pytest.fixture(scope="session")
def text_docs() -> list[str]:
    """About 200 documents of real English (Shakespeare, from the offline corpus)."""
    from lm_saes.models.corpus import load_corpus

    return load_corpus("shakespeare")[:200]


@pytest.fixture(scope="session")
def dataset_file(tmp_path_factory, text_docs) -> Path:
    """The documents as a jsonl dataset with a 'text' column."""
    from lm_saes.models.corpus import write_jsonl

    path = tmp_path_factory.mktemp("data") / "docs.jsonl"
    write_jsonl(text_docs, path)
    return path


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory, text_docs) -> Path:
    """A randomly initialised 3-layer GPT-2 with a trained BPE tokenizer, saved as a HF directory."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from lm_saes.models.tokenizer import train_bpe

    tokenizer = train_bpe(text_docs, vocab_size=512)
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=64, n_embd=TEST_D_MODEL, n_layer=TEST_LAYERS,
        n_head=4, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    path = tmp_path_factory.mktemp("model") / "tiny"
    GPT2LMHeadModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
