"""The sweep's results: one row per member and per baseline, the Pareto fronts, CSV and JSON.

The record's format is documented in ``sweep.record``. A member is on the front of a metric
when no other finished member has an L0 at most its own and a metric at least its own, one of
the two strictly (lower L0 and higher explained variance / CE loss recovered are better).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lm_saes.activations.manifest import write_atomic
from lm_saes.sweep.record import BASELINE, FAILED, FINISHED, FRONTIERS, MEMBER, PENDING

# The table's metric columns, in order (a metric nobody has is left out).
METRICS = ("l0", "explained_variance", "ce_loss_recovered", "kl_spliced", "mse", "dead_fraction", "mmcs",
           "dictionary_mmcs", "features_recovered")  # the last three when the cache has ground truth
RESULTS_JSON, RESULTS_CSV = "results.json", "results.csv"


def pareto_front(points: Sequence[tuple[float, float]]) -> list[bool]:
    """For each (l0, value): whether no other point dominates it (l0 <= and value >= , one strict)."""
    return [
        not any(l0b <= l0a and vb >= va and (l0b < l0a or vb > va) for l0b, vb in points)
        for l0a, va in points
    ]


def member_row(name: str, variant: str, params: dict[str, Any], directory: Path,
               metrics: dict | None, error: str | None, config: dict | None = None) -> dict:
    """A member's row; ``config``: its whole TrainConfig as JSON, kept in the record."""
    scalars = {p: v if isinstance(v, (bool, int, float, str)) else _cell(v) for p, v in params.items()}
    row = {"name": name, "kind": MEMBER, "variant": variant, "params": scalars,
           "dictionary_dir": str(directory.resolve()), **({"config": config} if config is not None else {})}
    if error is not None:
        row.update(status=FAILED, error=error)
    elif metrics is not None:
        row.update(status=FINISHED, metrics=_table_metrics(metrics))
    else:
        row.update(status=PENDING)
    return row


def baseline_row(name: str, metrics: dict) -> dict:
    method, _, budget = name.partition("-l0-")
    return {"name": name, "kind": BASELINE, "variant": method, "status": FINISHED,
            "params": {"l0": int(budget)}, "metrics": _table_metrics(metrics)}


def build_record(name: str, output_dir: Path, labels: dict[str, str], rows: list[dict], complete: bool) -> dict:
    """The sweep's record (see sweep.record), with each row's ``frontier`` marked; ``labels``:
    each varied field's dotted path -> its column label."""
    present = [k for k in METRICS if any(k in r.get("metrics", {}) for r in rows)]
    frontiers = {k: label for k, label in FRONTIERS.items() if k in present}
    for row in rows:
        row["frontier"] = []
    for key in frontiers:
        scored = [r for r in rows if r["kind"] == MEMBER and key in r.get("metrics", {})
                  and math.isfinite(r["metrics"][key]) and "l0" in r["metrics"]]
        on_front = pareto_front([(r["metrics"]["l0"], r["metrics"][key]) for r in scored])
        for row, front in zip(scored, on_front):
            if front:
                row["frontier"].append(key)
    return {"name": name, "output_dir": str(output_dir.resolve()), "status": "complete" if complete else "running",
            "varied": list(labels.values()), "paths": {label: path for path, label in labels.items()},
            "metrics": present, "frontiers": frontiers, "rows": rows}


def write_results(record: dict, output_dir: Path) -> tuple[Path, Path]:
    """results.json (the record) and results.csv (one line per row) in ``output_dir``."""
    output_dir.mkdir(parents=True, exist_ok=True)
    as_json, as_csv = output_dir / RESULTS_JSON, output_dir / RESULTS_CSV
    write_atomic(as_json, (json.dumps(record, indent=2) + "\n").encode())
    write_atomic(as_csv, to_csv(record).encode())
    return as_json, as_csv


def to_csv(record: dict) -> str:
    columns = ["name", "kind", "variant", "status", *record["varied"], *record["metrics"], "frontier",
               "error", "dictionary_dir"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, lineterminator="\n")
    writer.writeheader()
    for row in record["rows"]:
        writer.writerow({
            "name": row["name"], "kind": row["kind"], "variant": row["variant"], "status": row["status"],
            **{p: _cell(row["params"].get(p)) for p in record["varied"]},
            **{k: row.get("metrics", {}).get(k, "") for k in record["metrics"]},
            "frontier": " ".join(row["frontier"]), "error": row.get("error", ""),
            "dictionary_dir": row.get("dictionary_dir", ""),
        })
    return buffer.getvalue()


def format_table(record: dict) -> str:
    """The table as aligned text; ``*`` marks a member on a Pareto front."""
    headers = ["", "name", "status", *record["varied"], *record["metrics"]]
    lines = []
    for row in record["rows"]:
        metrics = row.get("metrics", {})
        lines.append(["*" if row["frontier"] else "", row["name"], row["status"],
                      *(_cell(row["params"].get(p)) for p in record["varied"]),
                      *(f"{metrics[k]:.4g}" if k in metrics else "" for k in record["metrics"])])
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *lines)]
    text = ["  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip() for cells in [headers, *lines]]
    failed = [f"  {r['name']} failed: {r['error']}" for r in record["rows"] if r["status"] == FAILED]
    fronts = ", ".join(f"L0 vs {label}" for label in record["frontiers"].values())
    return "\n".join([*text, *([f"* on a Pareto front ({fronts})"] if fronts else []), *failed])


def _table_metrics(metrics: dict) -> dict[str, float]:
    return {k: float(metrics[k]) for k in METRICS if k in metrics and math.isfinite(float(metrics[k]))}


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return str(value.get("kind", json.dumps(value)))
    return str(value)
