"""The results table: Pareto fronts by hand, rows of failed and pending members, CSV and text."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from lm_saes.sweep.report import baseline_row, build_record, format_table, member_row, pareto_front, to_csv


def test_pareto_front_by_hand():
    # (L0, EV): b dominates d (lower L0, higher EV); a and c trade off; e ties a exactly.
    points = [(4, 0.80), (8, 0.90), (16, 0.95), (16, 0.85), (4, 0.80)]
    assert pareto_front(points) == [True, True, True, False, True]
    assert pareto_front([]) == []
    assert pareto_front([(2, 0.1), (1, 0.5)]) == [False, True]


def test_rows_record_csv_and_text(tmp_path):
    rows = [
        member_row("topk-k4", "topk", {"k": 4}, tmp_path / "a", {"l0": 4.0, "explained_variance": 0.8,
                                                                  "ce_loss_recovered": 0.9, "mse": 1.0}, None),
        member_row("topk-k8", "topk", {"k": 8}, tmp_path / "b", {"l0": 8.0, "explained_variance": 0.7,
                                                                  "ce_loss_recovered": 0.95, "mse": 2.0}, None),
        member_row("topk-k16", "topk", {"k": 16}, tmp_path / "c", None, "the loss became NaN"),
        member_row("topk-k32", "topk", {"k": 32}, tmp_path / "d", None, None),
        baseline_row("pca-l0-4", {"l0": 4.0, "explained_variance": 0.99, "ce_loss_recovered": 0.99, "mse": 0.1,
                                  "density_histogram": {"counts": [1]}}),
    ]
    record = build_record("s", tmp_path, {"dictionary.k": "k"}, rows, complete=True)
    assert record["metrics"] == ["l0", "explained_variance", "ce_loss_recovered", "mse"]
    assert record["paths"] == {"k": "dictionary.k"} and record["varied"] == ["k"]
    fronts = {r["name"]: r["frontier"] for r in record["rows"]}
    # k8 has a worse EV at a higher L0 (off that front) but the best CE recovered (on that one);
    # baselines never join the members' fronts.
    assert fronts == {"topk-k4": ["explained_variance", "ce_loss_recovered"], "topk-k8": ["ce_loss_recovered"],
                      "topk-k16": [], "topk-k32": [], "pca-l0-4": []}
    assert [r["status"] for r in record["rows"]] == ["finished", "finished", "failed", "pending", "finished"]
    assert record["rows"][4]["params"] == {"l0": 4} and record["rows"][4]["variant"] == "pca"
    table = list(csv.DictReader(io.StringIO(to_csv(record))))
    assert table[2]["error"] == "the loss became NaN" and table[2]["explained_variance"] == ""
    assert table[0]["frontier"] == "explained_variance ce_loss_recovered"
    assert Path(table[0]["dictionary_dir"]) == (tmp_path / "a").resolve()
    text = format_table(record).splitlines()
    assert text[0].split() == ["name", "status", "k", "l0", "explained_variance", "ce_loss_recovered", "mse"]
    assert text[1].startswith("*  topk-k4") and text[3].startswith("   topk-k16")
    assert text[-1] == "  topk-k16 failed: the loss became NaN"
