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


@pytest.fixture(scope="session")
def bert_dir(tmp_path_factory, text_docs) -> Path:
    """A randomly initialised 2-layer BERT encoder with a WordPiece tokenizer trained here, whose
    template adds [CLS] ... [SEP] as BERT's does (the offline stand-in for e.g. all-MiniLM-L6-v2)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, BertTokenizerFast

    wordpiece = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    wordpiece.normalizer = normalizers.BertNormalizer(lowercase=True)
    wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    wordpiece.decoder = decoders.WordPiece(prefix="##")
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    wordpiece.train_from_iterator(text_docs, trainers.WordPieceTrainer(vocab_size=600, special_tokens=specials,
                                                                       show_progress=False))
    cls, sep = wordpiece.token_to_id("[CLS]"), wordpiece.token_to_id("[SEP]")
    wordpiece.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    tokenizer = BertTokenizerFast(tokenizer_object=wordpiece, unk_token="[UNK]", pad_token="[PAD]",
                                  cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=TEST_D_MODEL, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=64, max_position_embeddings=64)
    path = tmp_path_factory.mktemp("bert") / "tiny-bert"
    BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def train_modular_addition(root: Path, **settings) -> Path:
    """examples/toy_modular_addition.toml's recipe (p = 53, no weight decay, 2000 steps) into ``root``."""
    from lm_saes.config import load_config
    from lm_saes.toys.config import ToyTrainConfig
    from lm_saes.toys.train import train_toy

    example = Path(__file__).parent.parent / "examples" / "toy_modular_addition.toml"
    overrides = [f"output_dir={root}", "progress=false", "checkpoint_every=500", "log_every=500"]
    cfg = load_config(ToyTrainConfig, example, overrides + [f"{k}={v}" for k, v in settings.items()])
    return train_toy(cfg).output_dir


@pytest.fixture(scope="session")
def modular_addition_dir(tmp_path_factory) -> Path:
    """A grokked modular-addition MLP (p = 53), trained once a session; checkpoints every 500 steps."""
    return train_modular_addition(tmp_path_factory.mktemp("toys") / "modular_addition")


@pytest.fixture(scope="session")
def random_labels_dir(tmp_path_factory) -> Path:
    """The same architecture and recipe trained on random labels (memorisation, no structure)."""
    return train_modular_addition(tmp_path_factory.mktemp("toys") / "random_labels", **{"toy.random_labels": "true"})


def train_toy_example(root: Path, example: str, *overrides: str) -> Path:
    """examples/<example> trained into ``root`` (without checkpoints or a progress bar)."""
    from lm_saes.config import load_config
    from lm_saes.toys.config import ToyTrainConfig
    from lm_saes.toys.train import train_toy

    path = Path(__file__).parent.parent / "examples" / example
    cfg = load_config(ToyTrainConfig, path, [f"output_dir={root}", "progress=false", "checkpoint_every=0", *overrides])
    return train_toy(cfg).output_dir


@pytest.fixture(scope="session")
def toy_example():
    """``train_toy_example``: (root, example file, *overrides) -> a trained toy directory."""
    return train_toy_example


@pytest.fixture(scope="session")
def tms_5_2_dir(tmp_path_factory) -> Path:
    """examples/toy_tms_5-2.toml's TMS 5-2 (tied, the pentagon), trained once a session (~5 s)."""
    return train_toy_example(tmp_path_factory.mktemp("toys") / "tms_5-2", "toy_tms_5-2.toml",
                             "toy.n_train=2048", "toy.n_test=2048")


@pytest.fixture(scope="session")
def tms_5_2_spd(tmp_path_factory, tms_5_2_dir):
    """examples/spd_tms_5-2.toml trained in full on that toy, once a session (~100 s on 2 cores):
    the decomposition's directory and its training result."""
    from lm_saes.spd.config import load_train_config
    from lm_saes.spd.train import train_spd

    example = Path(__file__).parent.parent / "examples" / "spd_tms_5-2.toml"
    out = tmp_path_factory.mktemp("spd") / "tms_5-2"
    return train_spd(load_train_config(example, [f"target.path={tms_5_2_dir}", f"output_dir={out}",
                                                 "progress=false", "device=cpu"]))
