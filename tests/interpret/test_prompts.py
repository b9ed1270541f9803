"""The prompts follow OpenAI's token<TAB>activation format; replies are parsed or refused with
their raw text."""

from __future__ import annotations

import pytest

from lm_saes.interpret.contexts import Marked, Window
from lm_saes.interpret.prompts import (
    ReplyError, detect_messages, explain_messages, fuzz_messages, parse_explanation, parse_simulation,
    parse_verdicts, simulate_messages,
)


def test_the_explain_prompt_shows_tokens_and_their_levels():
    messages = explain_messages(12, [Window([" The", " king", "\n"], [0.0, 4.0, 2.0])], max_activation=8.0)
    assert messages[0]["role"] == "system" and "0 (no response) to 10" in messages[0]["content"]
    user = messages[1]["content"]
    assert user.startswith("Feature 12\n")
    assert "Passage 1:\n<start>\n The\t0\n king\t5\n\\n\t3\n<end>" in user


def test_scoring_prompts_number_the_passages():
    w = [Window(["a", " b"], [0.0, 1.0]), Window(["c\td"], [0.0])]
    assert "Passage 2 (1 tokens):\n<start>\nc\\td\n<end>" in simulate_messages(3, "x", w)[1]["content"]
    assert "1: a b\n2: c\\td\n" in detect_messages(3, "x", w)[1]["content"]
    fuzz = fuzz_messages(3, "x", [Marked(w[0], [False, True], True)])[1]["content"]
    assert "1: a<< b>>\n" in fuzz and "Explanation: x" in fuzz


def test_explanations_are_the_first_line_unwrapped():
    assert parse_explanation('\n  Explanation: "names of kings"\nbecause...') == "names of kings"
    for bad in ("", "  \n ", '""', "x" * 1001):
        with pytest.raises(ReplyError) as e:
            parse_explanation(bad)
        assert e.value.raw == bad and e.value.stage == "explain"


def test_simulations_must_match_the_passages():
    assert parse_simulation("Sure:\n```json\n[[0, 12], [3]]\n```", [2, 1]) == [[0.0, 10.0], [3.0]]
    assert parse_simulation("[1, 2]", [2]) == [[1.0, 2.0]]  # one passage as a flat list
    for raw, why in (("[[0, 1]]", "1 lists for 2"), ("[[0], [1]]", "passage 1 has 2 tokens"),
                     ("no list here", "no JSON list"), ("[[0, 1], [true]]", "is not a number"),
                     ("[[0, 1,], [1]]", "not valid JSON")):
        with pytest.raises(ReplyError, match=why) as e:
            parse_simulation(raw, [2, 1])
        assert e.value.raw == raw


def test_verdicts_are_zeros_and_ones():
    assert parse_verdicts("detect", "[1, 0, true, 0.0]", 4) == [True, False, True, False]
    with pytest.raises(ReplyError, match="3 verdicts for 2"):
        parse_verdicts("fuzz", "[1, 0, 1]", 2)
    with pytest.raises(ReplyError, match="neither 0 nor 1"):
        parse_verdicts("fuzz", "[1, 2]", 2)
