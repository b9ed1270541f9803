"""Pareto plots of a sweep: L0 (CI-L0 for decompositions: ``record["x"]``) against each metric of
``record["frontiers"]``, as PNG and HTML.

Members are dots (the frontier joined by a line and labelled), baselines one marker per method.
The HTML page holds the same figure as SVG, each point a link titled with its row's name and
values, above the results table, so it opens anywhere without a server.
"""

from __future__ import annotations

import csv
import html
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import NullFormatter, ScalarFormatter  # noqa: E402

from lm_saes.activations.manifest import write_atomic  # noqa: E402
from lm_saes.sweep.record import BASELINE, FINISHED, MEMBER  # noqa: E402
from lm_saes.sweep.report import axis_label, axis_name, to_csv  # noqa: E402

MARKERS = {"pca": "s", "ica": "D", "neurons": "^", "random": "v"}
BASELINE_LABELS = {"pca": "PCA", "ica": "ICA", "neurons": "neuron basis", "random": "random directions"}


def write_plots(record: dict, output_dir: Path) -> list[Path]:
    """``pareto_<metric>.png`` and ``.html`` for each front; the paths written."""
    written = []
    for key, label in record["frontiers"].items():
        figure = pareto_figure(record, key, label)
        png, page = output_dir / f"pareto_{key}.png", output_dir / f"pareto_{key}.html"
        figure.savefig(png, dpi=120)
        svg = io.StringIO()
        figure.savefig(svg, format="svg")
        plt.close(figure)
        write_atomic(page, _page(record, label, svg.getvalue()).encode())
        written += [png, page]
    return written


def pareto_figure(record: dict, key: str, label: str) -> Figure:
    x = record.get("x", "l0")  # the fronts' other axis: L0 for dictionaries, CI-L0 for decompositions
    figure, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
    members = [r for r in record["rows"] if r["kind"] == MEMBER and key in r.get("metrics", {})]
    front = sorted((r for r in members if key in r["frontier"]), key=lambda r: r["metrics"][x])
    if front:
        ax.plot([r["metrics"][x] for r in front], [r["metrics"][key] for r in front], "-", color="C0",
                alpha=0.5, zorder=1, label="Pareto front")
    points = ax.scatter([r["metrics"][x] for r in members], [r["metrics"][key] for r in members],
                        color="C0", zorder=3, label="sweep members")
    points.set_urls([_anchor(r["name"]) for r in members])
    for row in front:
        ax.annotate(row["name"], (row["metrics"][x], row["metrics"][key]), fontsize=7,
                    xytext=(4, 4), textcoords="offset points")
    baselines = [r for r in record["rows"] if r["kind"] == BASELINE and r["status"] == FINISHED
                 and key in r.get("metrics", {})]
    for i, method in enumerate(dict.fromkeys(r["variant"] for r in baselines)):
        rows = sorted((r for r in baselines if r["variant"] == method), key=lambda r: r["metrics"][x])
        ax.plot([r["metrics"][x] for r in rows], [r["metrics"][key] for r in rows],
                MARKERS.get(method, "x"), linestyle=":", color=f"C{i + 1}", label=BASELINE_LABELS.get(method, method))
    l0s = [r["metrics"][x] for r in members + baselines]
    if x == "l0":  # L0s span powers of two (CI-L0s, a few units or less: a linear axis)
        ax.set_xscale("log")
    if x == "l0" and l0s:  # plain numbers at the powers of two: 8, 16, 32 rather than 2 x 10^1
        ax.set_xticks([2**i for i in range(20) if min(l0s) / 1.5 <= 2**i <= max(l0s) * 1.5])
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(axis_label(record))
    ax.set_ylabel(label)
    ax.set_title(f"{record['name']}: {axis_name(record)} vs {label}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return figure


def _anchor(name: str) -> str:
    return f"#row-{name}"


def _page(record: dict, label: str, svg: str) -> str:
    svg = svg[svg.index("<svg"):]  # drop the XML prologue: the SVG is inlined
    rows = list(csv.reader(io.StringIO(to_csv(record))))
    header = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
    body = "".join(
        f'<tr id="row-{html.escape(cells[0])}">' + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>"
        for cells in rows[1:]
    )
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(record['name'])}: "
            f"{html.escape(axis_name(record))} vs "
            f"{html.escape(label)}</title><style>body{{font-family:sans-serif;margin:1.5em}}table{{border-collapse:"
            "collapse;font-size:13px}}td,th{{border:1px solid #ccc;padding:2px 6px}}tr:target{{background:#ffd}}"
            f"</style></head><body>{svg}<table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>"
            "</body></html>\n")

