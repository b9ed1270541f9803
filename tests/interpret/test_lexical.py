"""The lexical baseline: characteristic tokens by share of activation, and the simulator reading
tokens back from any explanation; on features with known behaviour, its scores are known."""

from __future__ import annotations

import asyncio

import pytest

from lm_saes.interpret import lexical
from lm_saes.interpret.config import LexicalConfig
from lm_saes.interpret.contexts import FeatureContexts, Window
from lm_saes.interpret.feature import interpret_feature
from lm_saes.interpret.judges import LexicalJudge


def test_characteristic_tokens_carry_the_activation_and_reliably_fire():
    windows = [Window([" The", " king", " said"], [0.0, 3.0, 1.0]), Window(["king", "'s", " crown"], [2.0, 0.0, 4.0]),
               Window([" crown", " said", " the"], [0.0, 2.0, 0.0])]
    # of a total of 3 + 1 + 2 + 4 + 2 = 12: king 5/12 firing at 2 of 2, said 3/12 at 2 of 2, crown 4/12 but
    # at 1 of 2 occurrences (" The"/" the" and "'s" never fire)
    assert lexical.characteristic_tokens(windows, 2) == [("king", 5 / 12), ("said", 3 / 12)]
    assert lexical.characteristic_tokens(windows, 3)[2] == ("crown", 4 / 12 / 2)
    assert lexical.characteristic_tokens([Window(["a"], [0.0])], 3) == []
    assert lexical.characteristic_tokens([Window(["\n", " x"], [1.0, 1.0])], 3) == [("\n", 0.5), ("x", 0.5)]


def test_explanations_round_trip_through_the_simulator():
    text = lexical.format_explanation([("king", 0.5), ("\n", 0.25), ('"', 0.125)])
    assert text == '"king" 0.500, "\\n" 0.250, "\\"" 0.125'
    weights = lexical.explanation_weights(text)
    assert weights == {"king": 0.5, "\n": 0.25, '"': 0.125}
    assert lexical.simulate(weights, [" King", "\n", " queen", '"']) == [10.0, 5.0, 0.0, 2.5]
    # a model's free text: its quoted tokens, else its words, with weight 1
    assert lexical.explanation_weights('the token "dog" and "cat"') == {"dog": 1.0, "cat": 1.0}
    assert lexical.explanation_weights("Mentions of kings, crowns") == {"mentions": 1.0, "of": 1.0, "kings": 1.0,
                                                                        "crowns": 1.0}


def test_detection_and_fuzzing_verdicts():
    weights = {"king": 1.0, "crown": 0.5}
    assert lexical.detects(weights, ["the", " King"]) and not lexical.detects(weights, ["the", " queen"])
    tokens = ["the", " king", " wore", " a", " crown"]
    assert lexical.marks_look_right(weights, tokens, [False, True, False, False, True])
    assert not lexical.marks_look_right(weights, tokens, [True, False, True, False, False])
    assert not lexical.marks_look_right(weights, tokens, [False] * 5)


def contexts(fires_on: str, seed_words: list[str]) -> FeatureContexts:
    """A feature firing exactly on ``fires_on`` (activation 2) in every window that holds it."""
    def window(i: int) -> Window:
        tokens = [seed_words[(i + j) % len(seed_words)] for j in range(5)] + [fires_on]
        return Window(tokens, [2.0 if t == fires_on else 0.0 for t in tokens])
    negatives = [Window([seed_words[(i + j) % len(seed_words)] for j in range(6)], [0.0] * 6) for i in range(6)]
    return FeatureContexts(7, 2.0, [window(i) for i in range(4)], [window(i) for i in range(4, 10)], negatives,
                           random=[window(10), negatives[0]])


def test_a_token_feature_scores_perfectly_and_its_record_says_why():
    judge = LexicalJudge(LexicalConfig())
    record = asyncio.run(interpret_feature(judge, judge, contexts(" king", ["a", " b", " c", " d", " e"]), seed=0))
    assert record["status"] == "scored" and record["explanation"] == '"king" 1.000'
    assert record["scores"] == {"simulation": pytest.approx(1.0), "detection": 1.0, "fuzzing": 1.0}
    assert record["tokens"] == [{"token": "king", "weight": 1.0}] and record["requests"] == []
    assert record["n_contexts"] == {"explain": 4, "positive": 6, "negative": 6, "random": 2}
