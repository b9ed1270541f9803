"""The comparison of dictionaries by their mean scores (Cunningham et al. 2023 compare a learned
dictionary with PCA, ICA, NMF, neuron-basis and random ones this way): one row per dictionary,
each score's mean over the features with a 95% confidence interval (``scores.mean_interval``),
printed as a table and written as ``report.json`` and ``report.csv``."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from lm_saes.activations.manifest import write_atomic
from lm_saes.interpret.run import InterpretResult
from lm_saes.interpret.scores import SCORES

REPORT_JSON, REPORT_CSV = "report.json", "report.csv"


def comparison(results: list[InterpretResult]) -> list[dict]:
    """One row per interpreted dictionary: its name, the explainer, counts and mean scores."""
    return [{"dictionary": r.dictionary, "explainer": r.explainer, "kind": r.kind, "n_features": r.n_features,
             "means": r.means} for r in results]


def format_comparison(rows: list[dict]) -> str:
    """The rows as aligned text: ``mean [low, high]`` per score, over ``n`` features."""
    headers = ["dictionary", "n", *SCORES]
    lines = []
    for row in rows:
        n = max((m["n"] for m in row["means"].values()), default=0)
        lines.append([row["dictionary"], str(n), *(_cell(row["means"].get(s)) for s in SCORES)])
    widths = [max(len(c) for c in column) for column in zip(headers, *lines)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip() for cells in [headers, *lines])


def write_report(rows: list[dict], output_dir: Path) -> tuple[Path, Path]:
    output_dir.mkdir(parents=True, exist_ok=True)
    as_json, as_csv = output_dir / REPORT_JSON, output_dir / REPORT_CSV
    write_atomic(as_json, (json.dumps({"confidence": 0.95, "rows": rows}, indent=2) + "\n").encode())
    buffer = io.StringIO()
    columns = ["dictionary", "explainer", "kind"] + [f"{s}_{k}" for s in SCORES for k in ("n", "mean", "low", "high")]
    writer = csv.DictWriter(buffer, columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({"dictionary": row["dictionary"], "explainer": row["explainer"], "kind": row["kind"],
                         **{f"{s}_{k}": row["means"].get(s, {}).get(k, "") for s in SCORES
                            for k in ("n", "mean", "low", "high")}})
    write_atomic(as_csv, buffer.getvalue().encode())
    return as_json, as_csv


def _cell(mean: dict | None) -> str:
    return "-" if mean is None else f"{mean['mean']:.3f} [{mean['low']:.3f}, {mean['high']:.3f}]"
