"""Heatmaps of a sweep: for each variant that varies exactly two fields, a metric over their grid.

This is the figure of the superposition replication (Sharkey et al. 2022): MMCS and the dead
fraction over dictionary size x L1 coefficient, where the best dictionaries are at least as large
as the number of true features and the L1 coefficient is neither too small (features smeared
across latents) nor too large (latents dead). A cell averages the members with those values (over
seeds); a cell no finished member has is left blank.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import matplotlib

matplotlib.use("Agg")  # files only: no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lm_saes.sweep.record import FINISHED, MEMBER  # noqa: E402

HEATMAP_METRICS = {"mmcs": "MMCS (over the true features)", "dictionary_mmcs": "MMCS (over the live latents)",
                   "dead_fraction": "dead fraction", "explained_variance": "explained variance"}


class Grid(NamedTuple):
    variant: str
    rows: str  # the varied field on the vertical axis (its column label)
    columns: str  # the one on the horizontal axis
    row_values: list
    column_values: list
    cells: dict[str, np.ndarray]  # metric -> [n_rows, n_columns] means (nan where no member finished)


def grids(record: dict) -> list[Grid]:
    """One grid per variant whose finished members vary exactly two of the sweep's fields."""
    out = []
    for variant in dict.fromkeys(r["variant"] for r in record["rows"] if r["kind"] == MEMBER):
        members = [r for r in record["rows"] if r["kind"] == MEMBER and r["variant"] == variant
                   and r["status"] == FINISHED]
        varied = [p for p in record["varied"] if len({_key(r["params"].get(p)) for r in members}) > 1]
        if len(varied) != 2:
            continue
        rows, columns = varied
        row_values = sorted({r["params"][rows] for r in members}, key=_order)
        column_values = sorted({r["params"][columns] for r in members}, key=_order)
        cells = {}
        for metric in HEATMAP_METRICS:
            table = np.full((len(row_values), len(column_values)), np.nan)
            for i, a in enumerate(row_values):
                for j, b in enumerate(column_values):
                    values = [r["metrics"][metric] for r in members if r["params"][rows] == a
                              and r["params"][columns] == b and metric in r.get("metrics", {})]
                    if values:
                        table[i, j] = float(np.mean(values))
            if not np.isnan(table).all():
                cells[metric] = table
        out.append(Grid(variant, rows, columns, row_values, column_values, cells))
    return out


def write_heatmaps(record: dict, output_dir: Path) -> list[Path]:
    """``heatmap_<variant>_<metric>.png`` for each grid and metric it has; the paths written."""
    written = []
    for grid in grids(record):
        for metric, table in grid.cells.items():
            path = output_dir / f"heatmap_{grid.variant}_{metric}.png"
            figure = heatmap_figure(record["name"], grid, metric, table)
            figure.savefig(path, dpi=120)
            plt.close(figure)
            written.append(path)
    return written


def best_cell(grid: Grid, metric: str) -> tuple:
    """The (row value, column value) of the grid's largest ``metric``."""
    i, j = np.unravel_index(np.nanargmax(grid.cells[metric]), grid.cells[metric].shape)
    return grid.row_values[i], grid.column_values[j]


def heatmap_figure(name: str, grid: Grid, metric: str, table: np.ndarray):
    figure, ax = plt.subplots(figsize=(1.1 * len(grid.column_values) + 2.5, 0.6 * len(grid.row_values) + 1.8),
                              layout="constrained")
    image = ax.imshow(table, cmap="viridis", aspect="auto", origin="lower")
    ax.set_xticks(range(len(grid.column_values)), [_tick(v) for v in grid.column_values])
    ax.set_yticks(range(len(grid.row_values)), [_tick(v) for v in grid.row_values])
    ax.set_xlabel(grid.columns)
    ax.set_ylabel(grid.rows)
    finite = table[np.isfinite(table)]
    middle = (finite.min() + finite.max()) / 2 if finite.size else 0
    for i in range(table.shape[0]):
        for j in range(table.shape[1]):
            if np.isfinite(table[i, j]):
                ax.text(j, i, f"{table[i, j]:.2f}", ha="center", va="center", fontsize=8,
                        color="black" if table[i, j] > middle else "white")
    figure.colorbar(image, ax=ax, label=HEATMAP_METRICS[metric])
    ax.set_title(f"{name} / {grid.variant}: {HEATMAP_METRICS[metric]}")
    return figure


def _key(value) -> str:
    return repr(value)


def _order(value):
    return (0, value) if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) else (1, repr(value))


def _tick(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
