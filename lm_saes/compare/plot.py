"""The comparison's figure: per module (a row) and measure (a column), the histograms of the
best-match cosines both ways, MMCS in the legend."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def write_plot(result: dict, path: Path) -> Path:
    """``path`` (PNG) from a comparison record (``stage.compare_runs``'s JSON)."""
    modules = result["modules"]
    measures = list(dict.fromkeys(m for per in modules.values() for m in per))
    figure, axes = plt.subplots(len(modules), len(measures), figsize=(4.2 * len(measures), 2.8 * len(modules) + 0.6),
                                squeeze=False, layout="constrained")
    edges = np.asarray(result["histogram_edges"])
    centres, width = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
    lowest = min((centres[i] for per in modules.values() for c in per.values()
                  for side in ("a_to_b", "b_to_a") for i, n in enumerate(c[side]["histogram"]) if n), default=0.0)
    for row, (module, per) in enumerate(modules.items()):
        for column, measure in enumerate(measures):
            ax = axes[row][column]
            if measure not in per:
                ax.axis("off")
                continue
            c = per[measure]
            for side, label, color in (("a_to_b", "A -> B", "C0"), ("b_to_a", "B -> A", "C1")):
                counts = np.asarray(c[side]["histogram"])
                ax.bar(centres, counts, width=width, color=color, alpha=0.55,
                       label=f"{label}: MMCS {c[side]['mmcs']:.3f} ({c['n_a' if side == 'a_to_b' else 'n_b']})")
            ax.set_xlim(min(0.0, lowest - width[0]), 1.0)
            ax.set_title(f"{module}: {measure}", fontsize=9)
            ax.set_xlabel("best-match cosine", fontsize=8)
            ax.set_ylabel("count", fontsize=8)
            ax.legend(fontsize=7)
    figure.suptitle(f"A = {Path(result['a']).name}, B = {Path(result['b']).name}", fontsize=10)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
