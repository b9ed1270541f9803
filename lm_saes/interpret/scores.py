"""The three scores of an explanation and the confidence interval of their means.

- simulation (Bills et al. 2023, "Language models can explain neurons in language models"): the
  Pearson correlation, over every token of the held-out contexts (activating and not, pooled),
  between the simulator's predicted activations and the true ones. A constant prediction has no
  correlation with anything and scores 0.
- detection (Paulo et al. 2024, Delphi's "detection"): the balanced accuracy of saying which
  held-out contexts make the feature fire.
- fuzzing (Delphi's "fuzzing"): the balanced accuracy of saying whether the marked tokens of an
  activating context are the ones the feature fires on.

Balanced accuracy = (TPR + TNR) / 2; None when one class is absent (it would not be balanced).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

from scipy import stats

SCORES = ("simulation", "detection", "fuzzing")


def correlation(predicted: Sequence[float], actual: Sequence[float]) -> float:
    """Pearson's r of two equal-length sequences; 0 when either is constant."""
    if len(predicted) != len(actual):
        raise ValueError(f"{len(predicted)} predictions for {len(actual)} activations")
    n = len(actual)
    if n < 2:
        return 0.0
    mp, ma = sum(predicted) / n, sum(actual) / n
    cov = sum((p - mp) * (a - ma) for p, a in zip(predicted, actual))
    vp = sum((p - mp) ** 2 for p in predicted)
    va = sum((a - ma) ** 2 for a in actual)
    if vp == 0 or va == 0:
        return 0.0
    return max(-1.0, min(1.0, cov / math.sqrt(vp * va)))


def balanced_accuracy(predicted: Sequence[bool], actual: Sequence[bool]) -> float | None:
    """(true positive rate + true negative rate) / 2; None without both classes in ``actual``."""
    if len(predicted) != len(actual):
        raise ValueError(f"{len(predicted)} predictions for {len(actual)} labels")
    positives = [p for p, a in zip(predicted, actual) if a]
    negatives = [p for p, a in zip(predicted, actual) if not a]
    if not positives or not negatives:
        return None
    return (sum(positives) / len(positives) + sum(not p for p in negatives) / len(negatives)) / 2


class MeanInterval(NamedTuple):
    """A mean with its two-sided confidence interval (Student's t over the features)."""

    n: int
    mean: float
    low: float
    high: float


def mean_interval(values: Sequence[float], confidence: float = 0.95) -> MeanInterval | None:
    """mean +- t_{(1+c)/2, n-1} s / sqrt(n); the interval is the mean itself for n = 1; None for n = 0."""
    n = len(values)
    if n == 0:
        return None
    mean = sum(values) / n
    if n == 1:
        return MeanInterval(1, mean, mean, mean)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(stats.t.ppf((1 + confidence) / 2, n - 1)) * sd / math.sqrt(n)
    return MeanInterval(n, mean, mean - half, mean + half)
