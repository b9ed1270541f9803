"""Context framing read from the tokenizer: [BOS] for GPT-2-style, [CLS] ... [SEP] for BERT-style
encoders, a warning when the frame is left out, and contexts built with it."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from lm_saes.config import DataConfig
from lm_saes.data.framing import context_frame, special_ids
from lm_saes.data.tokens import build_contexts
from lm_saes.models.tokenizer import train_bpe

DOCS = ["the cat sat on the mat", "a dog ran far away", "thou art more lovely"]


@pytest.fixture(scope="module")
def bert(bert_dir):
    return AutoTokenizer.from_pretrained(bert_dir)


def test_gpt2_style_contexts_start_with_bos_and_bert_style_ones_are_wrapped_in_cls_and_sep(bert):
    gpt2 = train_bpe(DOCS * 10, vocab_size=300)
    bos = gpt2.bos_token_id
    assert context_frame(gpt2) == ((bos,), (), bos, frozenset({bos}))
    cls, sep = bert.cls_token_id, bert.sep_token_id
    assert context_frame(bert) == ((cls,), (sep,), sep, frozenset({cls, sep}))
    assert special_ids(bert) == {cls, sep}


def test_leaving_the_frame_out_warns_naming_the_tokens(bert):
    with pytest.warns(UserWarning, match=r"without \[CLS\] and \[SEP\], which .* expects"):
        frame = context_frame(bert, add_special_tokens=False)
    assert (frame.start, frame.end, frame.separator) == ((), (), bert.sep_token_id)


def test_bert_contexts_are_cls_text_sep_packed_or_padded(bert):
    cls, sep, pad = bert.cls_token_id, bert.sep_token_id, bert.pad_token_id
    ids = [bert(doc, add_special_tokens=False)["input_ids"] for doc in DOCS]
    stream = [t for doc in ids for t in doc + [sep]]
    packed = build_contexts(DOCS, bert, DataConfig(path="x", context_size=6), pad)
    body = 4  # 6 - [CLS] - [SEP]
    assert packed.tokens.tolist() == [[cls, *stream[i * body:(i + 1) * body], sep] for i in range(len(stream) // body)]
    padded = build_contexts(DOCS, bert, DataConfig(path="x", context_size=8, packing=False), pad)
    for doc, row, mask in zip(ids, padded.tokens.tolist(), padded.mask.tolist()):
        real = [cls, *doc[:6], sep]
        assert row == real + [pad] * (8 - len(real)) and mask == [True] * len(real) + [False] * (8 - len(real))
