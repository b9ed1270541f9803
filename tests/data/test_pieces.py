"""Token display: each token's piece in context, so that a window joined reads as the text."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoTokenizer

from lm_saes.analysis.documents import TokenStrings
from lm_saes.analysis.show import render_feature
from lm_saes.data.pieces import TokenPieces, gpt2_byte_decoder
from lm_saes.models.tokenizer import train_bpe

TEXT = "Shall I compare thee to a summer's day? naïve café — 🙂 ok"


@pytest.fixture(scope="module")
def gpt2(text_docs):
    return train_bpe(text_docs[:50], vocab_size=400)


def test_wordpiece_continuations_join_their_word(bert_dir):
    bert = AutoTokenizer.from_pretrained(bert_dir)
    ids = bert("the names at your wedding", add_special_tokens=False)["input_ids"]
    assert any(t.startswith("##") for t in bert.convert_ids_to_tokens(ids))  # some words are split
    pieces = TokenPieces(bert).row(ids)
    assert "".join(pieces) == " " + bert.decode(ids) and not any("##" in p for p in pieces)


def test_a_character_split_over_byte_level_tokens_is_shown_once_on_the_token_completing_it(gpt2):
    ids = gpt2(TEXT, add_special_tokens=False)["input_ids"]
    alone = [gpt2.decode([i]) for i in ids]
    assert "\ufffd" in "".join(alone)  # decoded one at a time, split characters are lost
    pieces = TokenPieces(gpt2).row(ids)
    assert "".join(pieces) == TEXT and len(pieces) == len(ids)
    first = next(k for k, text in enumerate(alone) if text == "\ufffd")  # a token holding a partial character
    assert pieces[first] == ""


def test_the_byte_table_covers_every_byte_once():
    table = gpt2_byte_decoder()
    assert sorted(table.values()) == list(range(256)) and table["Ġ"] == ord(" ")


def test_windows_equal_the_slow_stream_decoding_of_each_row(gpt2):
    ids = torch.tensor(gpt2(TEXT * 3, add_special_tokens=False)["input_ids"])
    windows = ids.unfold(0, 7, 3)  # [n, 7] overlapping windows, some cutting characters
    windows[0, :2] = -1  # before the context's start
    pieces, strings = TokenPieces(gpt2), TokenStrings(gpt2).of(windows)
    for window, shown in zip(windows.tolist(), strings):
        valid = [i for i in window if i >= 0]
        assert [s for s in shown if s is not None] == pieces.row(valid)
        assert shown[:window.count(-1)] == [None] * window.count(-1)


def test_show_prints_a_bert_context_as_text(bert_dir):
    bert = AutoTokenizer.from_pretrained(bert_dir)
    ids = bert("the names at your wedding", add_special_tokens=True)["input_ids"]
    tokens = TokenStrings(bert).of(torch.tensor([ids]))[0]
    doc = {"index": 0, "density": 0.1, "max_activation": 1.0, "top_contexts": [
        {"max": 1.0, "tokens": tokens, "acts": [0.0] * len(tokens)}]}
    assert render_feature(doc, "bert-sae").splitlines()[-1].endswith("[CLS] the names at your wedding[SEP]")


def test_bytes_that_complete_no_character_are_shown_as_hex_never_as_a_replacement_character(gpt2):
    ids = gpt2(TEXT, add_special_tokens=False)["input_ids"]
    pieces = TokenPieces(gpt2)
    first = next(k for k, i in enumerate(ids) if not pieces.whole(i))  # the first token of a split character
    lead = pieces.piece(ids[first])
    hexed = "".join(f"<0x{b:02X}>" for b in lead)
    assert pieces.row(ids[first:first + 1]) == [hexed]  # the window ends inside the character
    tail = pieces.row(ids[first + 1:first + 2])  # the window starts inside it
    assert tail[0].startswith("<0x") and "\ufffd" not in tail[0]
    assert pieces.shown(ids[first]) == hexed and gpt2.decode([ids[first]]) == "\ufffd"  # a logit token
    whole = next(i for i in ids if pieces.whole(i))
    assert pieces.shown(whole) == gpt2.decode([whole])
