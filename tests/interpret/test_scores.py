"""The three scores' definitions against hand-computed values, and the confidence interval."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import balanced_accuracy_score

from lm_saes.interpret.scores import balanced_accuracy, correlation, mean_interval


def test_correlation_is_pearsons_r():
    # x = [0, 0, 10, 5], y = [0, 1, 4, 2]: means 3.75, 1.75; cov sum = 3.75*1.75 + 3.75*0.75 + 6.25*2.25
    # + 1.25*0.25 = 23.75; var sums 68.75 and 8.75 -> r = 23.75 / sqrt(601.5625) = 0.968349...
    assert correlation([0, 0, 10, 5], [0, 1, 4, 2]) == pytest.approx(23.75 / math.sqrt(68.75 * 8.75))
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=50), rng.normal(size=50)
    assert correlation(list(x), list(y)) == pytest.approx(stats.pearsonr(x, y).statistic)
    assert correlation([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)


def test_a_constant_prediction_scores_zero():
    assert correlation([0, 0, 0], [0, 1, 2]) == 0.0  # a simulator that predicts nothing explains nothing
    assert correlation([1.0], [2.0]) == 0.0
    with pytest.raises(ValueError, match="2 predictions for 3"):
        correlation([1, 2], [1, 2, 3])


def test_balanced_accuracy_averages_the_two_recalls():
    # positives: 3 of 4 found (0.75); negatives: 1 of 2 rejected (0.5) -> 0.625
    predicted = [True, True, True, False, True, False]
    actual = [True, True, True, True, False, False]
    assert balanced_accuracy(predicted, actual) == pytest.approx(0.625)
    assert balanced_accuracy(predicted, actual) == pytest.approx(balanced_accuracy_score(actual, predicted))
    assert balanced_accuracy([True] * 5, [True, False, False, False, False]) == 0.5  # saying yes always: chance
    assert balanced_accuracy([True, False], [True, True]) is None  # one class: not balanced


def test_mean_interval_is_students_t():
    values = [0.2, 0.4, 0.9, 0.5]
    mean = 0.5
    sd = math.sqrt(((0.3**2) + (0.1**2) + (0.4**2) + 0) / 3)
    half = stats.t.ppf(0.975, 3) * sd / 2
    got = mean_interval(values)
    assert got.n == 4 and got.mean == pytest.approx(mean)
    assert (got.low, got.high) == (pytest.approx(mean - half), pytest.approx(mean + half))
    assert mean_interval([0.3]) == (1, 0.3, 0.3, 0.3) and mean_interval([]) is None
