"""GET /api/sweeps and /api/sweeps/{name}: the record of a real sweep as stored, each row marked
`analyzed` (its dictionary is in the store with a complete analysis)."""

from __future__ import annotations

import copy

import pytest

from tests.server.served import BARE, HOOK, SHORT_SPD, SWEEP, SWEPT_MEMBER


def test_list_counts_the_members_of_each_sweep(client, swept, store):
    listed = {s["name"]: s for s in client.get("/api/sweeps").json()}
    assert listed[SWEEP] == {
        "name": SWEEP, "status": "complete", "updated_at": store.sweep(SWEEP)["updated_at"],
        "n_members": 3, "n_finished": 2, "n_failed": 1,
    }
    assert list(listed) == sorted(listed)


def test_detail_is_the_whole_record_with_analyzed_rows(client, swept):
    body = client.get(f"/api/sweeps/{SWEEP}").json()
    for key in ("name", "status", "output_dir", "varied", "paths", "metrics", "frontiers"):
        assert body[key] == swept[key], key
    names = [r["name"] for r in body["rows"]]
    assert names == ["topk-k2", "topk-k4", "unstable", "pca-l0-2", "pca-l0-4", "ica-l0-2", "ica-l0-4"]
    for got, want in zip(body["rows"], swept["rows"]):
        assert {k: got[k] for k in want} == want  # every stored field as stored
    # The first member was analyzed after the sweep: linked through its directory.
    assert [r["analyzed"] for r in body["rows"]] == [True] + [False] * 6
    first, _, failed, pca, *_ = body["rows"]
    assert first["dictionary"] == SWEPT_MEMBER and first["params"] == {"k": 2}
    assert failed["status"] == "failed" and "NaN" in failed["error"] and failed["metrics"] == {}
    assert pca["kind"] == "baseline" and pca["dictionary"] is None and pca["error"] is None


def test_a_dictionary_without_a_complete_analysis_is_not_analyzed(client, store, swept):
    record = copy.deepcopy(swept)
    record["rows"][0]["dictionary"] = BARE
    store.upsert_sweep("bare-sweep", {k: v for k, v in record.items() if k != "name"})
    rows = client.get("/api/sweeps/bare-sweep").json()["rows"]
    assert rows[0]["dictionary"] == BARE and rows[0]["analyzed"] is False


def test_unknown_sweep_is_404_naming_the_stored_ones(client, swept):
    response = client.get("/api/sweeps/nope")
    assert response.status_code == 404
    assert "no sweep 'nope'" in response.json()["detail"] and SWEEP in response.json()["detail"]


def test_the_sweep_analyzes_a_member_once_and_refuses_unknown_names(stored, swept):
    from lm_saes.errors import ConfigError
    from lm_saes.sweep.analyze import analyze_members
    from lm_saes.sweep.config import SweepConfig

    cache = stored.dictionary_dir.parent / "cache" / HOOK

    def config(members) -> SweepConfig:
        return SweepConfig.model_validate({
            "name": SWEEP, "output_dir": swept["output_dir"], "train": {}, "store": stored.store, "progress": False,
            "analyze": {"members": members, "settings": {"cache": str(cache), "n_bands": 0, "device": "cpu"}}})

    assert analyze_members(config(["topk-k2"]), swept) == []  # done by the sweep already: not again
    with pytest.raises(ConfigError, match=r"analyze.members names \['nope'\], which are not members"):
        analyze_members(config(["nope"]), swept)
    # the failed member and the baselines are never analyzed; "frontier" picks finished members only
    assert analyze_members(config(["unstable"]), swept) == []


def test_interpreted_rows_gain_the_interpretability_column(client, stored, swept, tmp_path):
    from lm_saes.interpret.config import InterpretConfig
    from lm_saes.interpret.stage import run_interpret

    outcome = run_interpret(InterpretConfig(dictionary=SWEPT_MEMBER, store=stored.store, baselines=["pca"], device="cpu",
                                        output_dir=tmp_path, progress=False))
    assert [r.dictionary for r in outcome.results] == [SWEPT_MEMBER, f"{SWEEP}.pca-l0-2"]  # the sweep's row name
    body = client.get(f"/api/sweeps/{SWEEP}").json()
    assert body["metrics"][-1] == "interpretability" and body["interpretability_explainer"] == "lexical"
    rows = {r["name"]: r for r in body["rows"]}
    for row, result in zip(("topk-k2", "pca-l0-2"), outcome.results):
        assert rows[row]["analyzed"] and rows[row]["dictionary"] == result.dictionary
        assert rows[row]["metrics"]["interpretability"] == result.means["simulation"]["mean"]
    assert all("interpretability" not in r["metrics"] for n, r in rows.items() if n not in ("topk-k2", "pca-l0-2"))
    assert {p.name for p in outcome.files} == {"report.json", "report.csv"}


def test_an_spd_sweep_plots_against_its_records_x_and_links_its_decompositions(client, store, swept, short_decomposed):
    """A dictionary sweep's fronts are against L0 (no ``x`` stored); an SPD sweep records its own
    axis, CI-L0 (lm_saes.sweep.spd.X), which the Pareto page plots; a row whose analyzed dictionary
    is a decomposition says so (the UI links it to /decompositions/NAME)."""
    from lm_saes.sweep.spd import X

    body = client.get(f"/api/sweeps/{SWEEP}").json()
    assert "x" not in swept and body["x"] == "l0" and not any(r["decomposition"] for r in body["rows"])
    record = {k: v for k, v in copy.deepcopy(swept).items() if k != "name"}
    record["rows"][0]["dictionary"] = SHORT_SPD
    store.upsert_sweep("spd-axis-sweep", {**record, "x": X})
    body = client.get("/api/sweeps/spd-axis-sweep").json()
    assert body["x"] == X == "ci_l0"
    first, *others = body["rows"]
    assert (first["dictionary"], first["analyzed"], first["decomposition"]) == (SHORT_SPD, True, True)
    assert not any(r["decomposition"] for r in others)
