"""Figures of `lm-saes llc`: loss traces per chain, the LLC over checkpoints, Fourier norms."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

DPI = 120


def save(figure: Figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)
    plt.close(figure)
    return path


def plot_traces(loss_trace: np.ndarray, init_trace: np.ndarray, burn_in: int, title: str, path: Path) -> Path:
    """Each chain's loss per SGLD step, the loss at w* on the same batches, the burn-in shaded."""
    figure, ax = plt.subplots(figsize=(8, 4.5))
    steps = np.arange(loss_trace.shape[1])
    for c, trace in enumerate(loss_trace):
        ax.plot(steps, trace, lw=0.8, alpha=0.8, label=f"chain {c}" if len(loss_trace) <= 10 else None)
    ax.plot(steps, init_trace, color="black", lw=0.8, ls="--", label="at w* (same batches)")
    if burn_in:
        ax.axvspan(0, burn_in, color="grey", alpha=0.15, label="burn-in (discarded)")
    ax.set(xlabel="SGLD step", ylabel="minibatch loss", title=title)
    ax.legend(fontsize=7, ncol=2, loc="upper right")
    return save(figure, path)


def plot_checkpoints(rows: list[dict[str, Any]], title: str, path: Path) -> Path:
    """LLC (mean +- standard error) over training steps, beside train and test loss."""
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    steps = [r["step"] for r in rows]
    means = [_number(r["llc"]["mean"]) for r in rows]
    errors = [_number(r["llc"]["stderr"]) for r in rows]
    top.errorbar(steps, means, yerr=errors, marker="o", ms=3, capsize=2, color="tab:purple")
    top.set(ylabel="LLC", title=title)
    for key, color in (("train_loss", "tab:blue"), ("test_loss", "tab:orange")):
        if all(key in r for r in rows):
            bottom.plot(steps, [r[key] for r in rows], marker="o", ms=3, color=color, label=key.replace("_", " "))
    bottom.set(xlabel="training step", ylabel="loss", yscale="log")
    bottom.legend()
    return save(figure, path)


def plot_frequency_norms(norms: np.ndarray, keys: list[int], title: str, path: Path) -> Path:
    """The embedding's norm per Fourier frequency, the key frequencies highlighted."""
    figure, ax = plt.subplots(figsize=(8, 3.5))
    colors = ["tab:red" if k in keys else "tab:grey" for k in range(len(norms))]
    ax.bar(np.arange(len(norms)), norms, color=colors)
    ax.set(xlabel="frequency k", ylabel="||E||_k", title=title)
    return save(figure, path)


def plot_frequency_heatmap(steps: list[int], norms: np.ndarray, title: str, path: Path) -> Path:
    """Frequency norms [checkpoints, frequencies] as one heatmap over training steps."""
    figure, ax = plt.subplots(figsize=(8, 4.5))
    image = ax.imshow(norms.T, aspect="auto", origin="lower", cmap="viridis", interpolation="nearest")
    ticks = np.linspace(0, len(steps) - 1, min(len(steps), 8)).round().astype(int)
    ax.set_xticks(ticks, [str(steps[i]) for i in ticks])
    ax.set(xlabel="training step (checkpoint)", ylabel="frequency k", title=title)
    figure.colorbar(image, ax=ax, label="||E||_k")
    return save(figure, path)


def _number(value: Any) -> float:
    return float("nan") if value is None else float(value)
