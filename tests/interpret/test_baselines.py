"""Baselines of an interpreted dictionary: built at its L0 as a sweep builds them, analyzed like it,
interpreted the same way, reused on a rerun, and compared in a report."""

from __future__ import annotations

import csv
import json

from lm_saes.dictionaries import Dictionary
from lm_saes.interpret.config import InterpretConfig
from lm_saes.interpret.report import format_comparison
from lm_saes.interpret.stage import run_interpret


def test_baselines_are_built_analyzed_interpreted_and_compared(analyzed, store, tmp_path):
    cfg = InterpretConfig(dictionary=analyzed.name, store=analyzed.store, baselines=["random", "nmf"], device="cpu",
                          output_dir=tmp_path, progress=False, baseline_fit_tokens=2048)
    outcome = run_interpret(cfg)
    names = [r.dictionary for r in outcome.results]
    assert names == [analyzed.name, f"{analyzed.name}.random-l0-4", f"{analyzed.name}.nmf-l0-4"]  # TopK k = 4
    d_in = store.dictionary(analyzed.name)["d_in"]
    for name in names[1:]:
        method = name.split(".")[-1].split("-")[0]
        directory = tmp_path / "baselines" / f"{method}-l0-4"
        loaded = Dictionary.from_pretrained(directory)
        assert loaded.kind == "topk" and loaded.cfg.k == 4 and loaded.d_sae == 2 * d_in
        meta = json.loads((directory / "config.json").read_text())
        assert meta["baseline"] == {"method": method, "l0": 4, "of": analyzed.name, "fit_tokens": 2048, "seed": 0}
        run = store.analysis(name)
        assert run["summary"]["config"]["top_k"] == store.analysis(analyzed.name)["summary"]["config"]["top_k"]
    rows = {r["dictionary"]: r for r in outcome.report}
    for result in outcome.results:
        assert result.n_scored > 0 and rows[result.dictionary]["means"] == result.means
        assert set(result.means) == {"simulation", "detection", "fuzzing"}
    table = format_comparison(outcome.report)
    assert table.splitlines()[0].split() == ["dictionary", "n", "simulation", "detection", "fuzzing"]
    sim = outcome.results[0].means["simulation"]
    assert f"{sim['mean']:.3f} [{sim['low']:.3f}, {sim['high']:.3f}]" in table
    with open(tmp_path / "report.csv") as f:
        written = list(csv.DictReader(f))
    assert [r["dictionary"] for r in written] == names
    assert float(written[0]["detection_mean"]) == outcome.results[0].means["detection"]["mean"]

    again = run_interpret(cfg)  # nothing to redo: the baselines are reused, every feature was scored
    assert [r.n_scored + r.n_failed for r in again.results] == [0, 0, 0]
    assert [r.n_done_before for r in again.results] == [r.n_features for r in outcome.results]
    assert again.report == outcome.report
