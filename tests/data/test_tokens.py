"""Documents to token contexts: packing, BOS, padding, max_tokens, dataset loading."""

import pytest
import torch

from lm_saes.config import DataConfig
from lm_saes.data.tokens import build_contexts, load_texts
from lm_saes.errors import ConfigError, DatasetError
from lm_saes.models.tokenizer import train_bpe

DOCS = ["the cat sat", "on the mat", "a dog ran far away"]


@pytest.fixture(scope="module")
def tokenizer():
    return train_bpe(DOCS * 20, vocab_size=300)


def ids(tokenizer, text):
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_packing_separates_documents_by_bos_and_starts_each_context_with_it(tokenizer):
    bos = tokenizer.bos_token_id
    stream = [t for doc in DOCS for t in ids(tokenizer, doc) + [bos]]
    body = 3
    cfg = DataConfig(path="x", context_size=body + 1)
    contexts = build_contexts(DOCS, tokenizer, cfg, pad_id=bos)
    n = len(stream) // body  # the partial last context is dropped
    expected = [[bos] + stream[i * body : (i + 1) * body] for i in range(n)]
    assert contexts.tokens.tolist() == expected and contexts.tokens.dtype == torch.int32
    assert contexts.mask.all()


def test_packing_without_bos(tokenizer):
    bos = tokenizer.bos_token_id
    stream = [t for doc in DOCS for t in ids(tokenizer, doc) + [bos]]
    contexts = build_contexts(DOCS, tokenizer, DataConfig(path="x", context_size=4, prepend_bos=False), bos)
    assert contexts.tokens.flatten().tolist() == stream[: len(stream) // 4 * 4]


def test_one_document_per_context_is_truncated_and_right_padded(tokenizer):
    bos, pad = tokenizer.bos_token_id, 7
    cfg = DataConfig(path="x", context_size=6, packing=False)
    contexts = build_contexts(DOCS, tokenizer, cfg, pad_id=pad)
    for doc, row, mask in zip(DOCS, contexts.tokens.tolist(), contexts.mask.tolist()):
        real = ([bos] + ids(tokenizer, doc))[:6]
        assert row == real + [pad] * (6 - len(real))
        assert mask == [True] * len(real) + [False] * (6 - len(real))


def test_max_tokens_caps_the_number_of_contexts(tokenizer):
    cfg = DataConfig(path="x", context_size=4, max_tokens=9)  # 9 // 4 = 2 contexts
    assert len(build_contexts(DOCS * 10, tokenizer, cfg, 0).tokens) == 2


def test_errors_for_no_bos_and_too_little_text(tokenizer):
    from transformers import PreTrainedTokenizerFast

    no_bos = PreTrainedTokenizerFast(tokenizer_object=tokenizer.backend_tokenizer)  # no BOS, no template
    with pytest.raises(ConfigError, match="no BOS token"):
        build_contexts(DOCS, no_bos, DataConfig(path="x"), pad_id=0)
    with pytest.raises(DatasetError, match="no complete context of 128 tokens"):
        build_contexts(DOCS, tokenizer, DataConfig(path="tiny.jsonl"), 0)


def test_local_files_of_each_format_load_through_datasets(tmp_path):
    (tmp_path / "a.txt").write_text("first line\nsecond line\n")
    (tmp_path / "b.jsonl").write_text('{"text": "one"}\n{"text": "two"}\n')
    assert list(load_texts(DataConfig(path=str(tmp_path / "a.txt")))) == ["first line", "second line"]
    assert list(load_texts(DataConfig(path=str(tmp_path / "b.jsonl"), streaming=True))) == ["one", "two"]


def test_missing_local_file_and_unreachable_hub_name(tmp_path):
    with pytest.raises(DatasetError, match="no such file or directory"):
        load_texts(DataConfig(path=str(tmp_path / "missing.jsonl")))
    with pytest.raises(DatasetError, match="not a local file and could not be loaded from the hub"):
        load_texts(DataConfig(path="no-such-user/no-such-dataset"))
