import dataclasses
import json
import math
import shutil
import time

import pytest
import torch

from lm_saes.config import PretrainConfig
from lm_saes.errors import ConfigError, DatasetError
from lm_saes.models.corpus import shakespeare_files
from lm_saes.models.tiny_lm import (
    batch_order,
    lr_at,
    pretrain,
    split_train_val,
    unigram_cross_entropy,
)


def test_unigram_cross_entropy_by_hand():
    counts = torch.tensor([3, 1, 0])  # N = 4 tokens, V = 3: smoothed p = 4/7, 2/7, 1/7
    val = torch.tensor([0, 2, 0, 1])
    expected = -(2 * math.log(4 / 7) + math.log(1 / 7) + math.log(2 / 7)) / 4
    assert unigram_cross_entropy(counts, val) == pytest.approx(expected, rel=1e-12)


def test_lr_warms_up_linearly_then_decays_by_cosine_to_zero():
    cfg = PretrainConfig(output_dir="unused", lr=1e-3, warmup_steps=10, steps=110)
    assert lr_at(0, cfg) == pytest.approx(1e-4)
    assert lr_at(4, cfg) == pytest.approx(5e-4)
    assert lr_at(9, cfg) == pytest.approx(1e-3)
    assert lr_at(10, cfg) == pytest.approx(1e-3)  # cosine starts at the peak
    assert lr_at(35, cfg) == pytest.approx(1e-3 * (1 + math.cos(math.pi / 4)) / 2)
    assert lr_at(60, cfg) == pytest.approx(5e-4)
    assert lr_at(110, cfg) == pytest.approx(0.0, abs=1e-12)


def test_batch_order_is_seeded_and_covers_every_context_once_per_epoch():
    order = batch_order(n_contexts=10, batch_size=4, steps=5, seed=3)
    assert order.shape == (5, 4)
    assert sorted(order.flatten()[:10].tolist()) == list(range(10))
    assert torch.equal(order, batch_order(10, 4, 5, seed=3))


def test_split_train_val_is_seeded_disjoint_and_complete():
    docs = [f"doc {i}" for i in range(20)]
    train, val = split_train_val(docs, val_fraction=0.25, seed=1)
    assert len(val) == 5 and sorted(train + val) == sorted(docs)
    assert (train, val) == split_train_val(docs, val_fraction=0.25, seed=1)
    with pytest.raises(DatasetError, match="too few"):
        split_train_val(["only one"], val_fraction=0.5, seed=0)


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    """Three plays (about 0.5 MB) copied into a directory, as a user's own corpus would be."""
    root = tmp_path_factory.mktemp("corpus")
    for path in shakespeare_files()[:3]:
        shutil.copy(path, root / path.name)
    return root


def small_config(corpus, output_dir, **changes) -> PretrainConfig:
    values = dict(
        output_dir=output_dir,
        corpus=str(corpus),
        vocab_size=512,
        context_size=64,
        d_model=32,
        n_layer=1,
        n_head=2,
        batch_size=16,
        steps=250,
        lr=1e-2,
        warmup_steps=10,
        val_fraction=0.1,
        device="cpu",
    )
    return PretrainConfig(**(values | changes))


@pytest.mark.slow
def test_pretrain_end_to_end_then_reuse(small_corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "tiny"
    cfg = small_config(small_corpus, out)
    result = pretrain(cfg)

    assert not result.reused
    assert result.val_loss < result.unigram_val_loss
    assert result.train_tokens == 250 * 16 * 64 and result.steps == 250
    metrics = json.loads((out / "pretrain_metrics.json").read_text())
    assert metrics["val_loss"] == result.val_loss
    assert json.loads((out / "pretrain_config.json").read_text()) == cfg.model_dump(mode="json")
    val_docs = [json.loads(line)["text"] for line in (out / "corpus" / "val.jsonl").open()]
    train_docs = [json.loads(line)["text"] for line in (out / "corpus" / "train.jsonl").open()]
    assert val_docs and train_docs and not set(val_docs) & set(train_docs)

    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert model.config.vocab_size == len(tokenizer) == 512
    assert tokenizer.bos_token_id == tokenizer.eos_token_id == model.config.bos_token_id
    sentence = "Shall I compare thee to a summer's day?\n  Thou art more lovely — naïve 🙂"
    ids = tokenizer(sentence, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == sentence

    start = time.perf_counter()
    again = pretrain(cfg)
    assert time.perf_counter() - start < 1.0
    assert again == dataclasses.replace(result, reused=True)

    with pytest.raises(ConfigError, match="overwrite=true"):
        pretrain(small_config(small_corpus, out, steps=5))
    retrained = pretrain(small_config(small_corpus, out, steps=5, overwrite=True))
    assert not retrained.reused and retrained.steps == 5
    assert json.loads((out / "pretrain_metrics.json").read_text())["steps"] == 5


def test_missing_corpus_fails_before_writing_anything(tmp_path):
    cfg = small_config(tmp_path / "absent", tmp_path / "model")
    with pytest.raises(DatasetError, match="absent"):
        pretrain(cfg)
    assert not (tmp_path / "model").exists()
