"""Splitting a stored feature into explain and held-out contexts, the 0..10 scale, fuzzing's marks."""

from __future__ import annotations

from lm_saes.interpret.contexts import Window, detection_items, fuzzing_items, levels, split_contexts


def example(tag: str, peak: float) -> dict:
    return {"context_id": 0, "peak": 1, "max": peak, "start": 0, "tokens": [f"{tag}0", f"{tag}1", f"{tag}2"],
            "acts": [0.0, peak, peak / 2]}


def test_top_and_band_samples_are_split_without_overlap():
    doc = {"index": 3, "max_activation": 8.0,
           "top_contexts": [example(f"t{i}", 8.0 - i) for i in range(5)],
           "quantiles": [{"band": b, "examples": [example(f"b{b}{i}", 1.0 + b) for i in range(3)]} for b in range(2)]}
    c = split_contexts(doc, explain_top=10, explain_per_band=1, score_top=1, score_per_band=5)
    names = lambda ws: [w.tokens[0][:-1] for w in ws]  # noqa: E731
    assert names(c.explain) == ["t0", "t2", "t4", "b00", "b10"]  # even ranks: the strongest is explained
    assert names(c.positives) == ["t1", "b01", "b11"]  # odd ranks, capped per kind
    assert not set(names(c.explain)) & set(names(c.positives))
    assert (c.index, c.max_activation, c.negatives) == (3, 8.0, [])
    silent = {**doc, "top_contexts": [{**example("z", 1.0), "acts": [0.0, 0.0, 0.0]}], "quantiles": []}
    assert split_contexts(silent, 5, 5, 5, 5).explain == []  # a window without activation teaches nothing


def test_levels_are_openais_0_to_10_with_any_activation_at_least_1():
    assert levels([0.0, 0.01, 5.0, 10.0, 12.0, -1.0], 10.0) == [0, 1, 5, 10, 10, 0]
    assert levels([1.0], 0.0) == [0]


def test_fuzzing_marks_half_the_windows_with_decoys_of_the_same_count():
    windows = [Window([f"w{i}{j}" for j in range(6)], [0.0, 3.0, 0.0, 1.0, 0.0, 0.0]) for i in range(7)]
    windows.append(Window(["a", "b"], [1.0, 2.0]))  # all active: no decoy is possible
    items = fuzzing_items(windows, seed=0, index=5)
    assert items == fuzzing_items(windows, seed=0, index=5) and items != fuzzing_items(windows, seed=1, index=5)
    for it in items:
        active = [a > 0 for a in it.window.acts]
        assert sum(it.marked) == sum(active)
        assert it.marked == active if it.correct else not any(m and a for m, a in zip(it.marked, active))
    assert sum(not it.correct for it in items) in (3, 4) and items[-1].correct


def test_detection_items_hold_every_held_out_window_once():
    from lm_saes.interpret.contexts import FeatureContexts

    pos = [Window([f"p{i}"], [1.0]) for i in range(4)]
    neg = [Window([f"n{i}"], [0.0]) for i in range(3)]
    items = detection_items(FeatureContexts(1, 1.0, [], pos, neg, []), seed=0)
    assert sorted((w.tokens[0], fires) for w, fires in items) == sorted(
        [(f"p{i}", True) for i in range(4)] + [(f"n{i}", False) for i in range(3)])
