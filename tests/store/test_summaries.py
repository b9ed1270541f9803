"""A feature's summary line: a person's interpretation, else its explanation, else its most
characteristic tokens, read from the summary documents alone (on the real wire-protocol server)."""

from __future__ import annotations

from lm_saes.store import open_store
from lm_saes.store.documents import top_tokens
from lm_saes.store.explanations import write_explanations
from lm_saes.store.summaries import summary_line, summary_lines


def example(tokens: list[str], peak: int, start: int = 10) -> dict:
    return {"context_id": 0, "peak": start + peak, "max": 1.0, "start": start, "tokens": tokens,
            "acts": [0.0] * len(tokens)}


def test_top_tokens_are_the_peak_tokens_most_frequent_first_whitespace_kept():
    contexts = [example(["a", "\n", "b"], 1), example([" the", "x"], 0), example(["\n", "y"], 0),
                example(["z", " the"], 1), example(["q", "\n"], 1), example(["k", "  "], 1)]
    # "\n" peaks 3 times, " the" twice, "  " once; ties keep the best-first order of the contexts
    assert top_tokens(contexts) == ["\n", " the", "  "]
    assert top_tokens(contexts, n=1) == ["\n"]
    assert top_tokens([]) == [] and top_tokens(None) == []
    assert top_tokens([{"tokens": ["a"], "peak": 5, "start": 0}, {"peak": 0}]) == []  # malformed: skipped


def test_the_line_prefers_an_interpretation_then_an_explanation_then_tokens():
    tokens = {"top_tokens": ["\n", " the"]}
    explained = {**tokens, "explanation": {"text": '"\\n" 0.900', "explainer": "lexical"}}
    assert summary_line(tokens) == {"source": "tokens", "text": '"\\n", " the"', "tokens": ["\n", " the"]}
    assert summary_line(explained) == {"source": "explanation", "text": '"\\n" 0.900', "tokens": []}
    assert summary_line({**explained, "interpretation": "line breaks"}) == {
        "source": "interpretation", "text": "line breaks", "tokens": []}
    assert summary_line({**explained, "interpretation": " "})["source"] == "explanation"  # a blank one is none
    assert summary_line({"index": 3}) is None


def test_lines_of_many_features_come_from_one_query_of_the_stored_summaries(store_cfg, feature):
    with open_store(store_cfg) as store:
        store.upsert_dictionary("d", {"d_sae": 4})
        newline = [example(["a", "\n"], 1)]
        with store.begin_analysis("d", n_features=4) as w:
            w.write_features([feature(0), feature(1, top_contexts=newline), feature(2, top_contexts=[]), feature(3)])
            run = w.complete()["id"]
        write_explanations(store, "d", "default", run, [{"index": 3, "explainer": "lexical", "kind": "lexical",
                                                         "status": "scored", "explanation": '"sat" 1.000',
                                                         "scores": {}, "failures": [], "requests": []}])
        run = store.analysis("d")
        lines = summary_lines(store, run, [3, 1, 2, 0, 1, 99])
        assert lines == {0: {"source": "tokens", "text": '" sat"', "tokens": [" sat"]},  # the conftest feature peaks on " sat"
                         1: {"source": "tokens", "text": '"\\n"', "tokens": ["\n"]},
                         3: {"source": "explanation", "text": '"sat" 1.000', "tokens": []}}  # 2 never fired, 99 is none
        assert summary_lines(store, run, []) == {} and summary_lines(store, None, [0]) == {}

        # a person's interpretation wins over the explanation and the tokens, once set in the store
        assert store.set_interpretation("d", 3, "sitting") and store.set_interpretation("d", 1, "line ends")
        lines = summary_lines(store, store.analysis("d"), [0, 1, 3])
        assert lines[3] == {"source": "interpretation", "text": "sitting", "tokens": []}
        assert lines[1] == {"source": "interpretation", "text": "line ends", "tokens": []}
        assert lines[0]["source"] == "tokens"
