"""SPD's losses against hand-computed values."""

import math

import pytest
import torch

from lm_saes.spd.config import PAnneal
from lm_saes.spd.losses import ci_l0, faithfulness_loss, importance_minimality, output_loss, p_at


def test_faithfulness_is_the_mean_squared_residual_over_every_decomposed_parameter():
    deltas = {"a": torch.tensor([[1.0, -1.0], [0.0, 2.0]]), "b": torch.tensor([[3.0]])}
    assert float(faithfulness_loss(deltas)) == pytest.approx((1 + 1 + 0 + 4 + 9) / 5)


def test_mse_and_kl_output_losses():
    assert float(output_loss(torch.tensor([1.0, 3.0]), torch.tensor([0.0, 0.0]), "mse")) == pytest.approx(5.0)
    target = torch.log(torch.tensor([[[0.5, 0.5]], [[0.9, 0.1]]]))  # [batch 2, ctx 1, vocab 2]
    pred = torch.log(torch.tensor([[[0.25, 0.75]], [[0.9, 0.1]]]))
    kl_first = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)  # the second position: identical, 0
    assert float(output_loss(pred, target, "kl")) == pytest.approx(kl_first / 2, rel=1e-5)
    assert float(output_loss(pred + 7.0, target, "kl")) == pytest.approx(kl_first / 2, rel=1e-5)  # logits, any shift


def test_importance_minimality_sums_subcomponents_of_batch_means():
    upper = {"a": torch.tensor([[0.5, 0.0], [1.0, 0.0]]), "b": torch.tensor([[2.0], [0.0]])}
    assert float(importance_minimality(upper, p=1.0, eps=0.0)) == pytest.approx(0.75 + 1.0)
    assert float(importance_minimality(upper, p=2.0, eps=0.0)) == pytest.approx((0.25 + 1) / 2 + 4 / 2)


def test_p_is_annealed_linearly_between_the_fractions():
    anneal = PAnneal(final=0.5, start_fraction=0.5, end_fraction=0.75)
    assert [p_at(s, 100, 2.0, anneal) for s in (0, 50, 60, 75, 99)] == pytest.approx([2.0, 2.0, 1.4, 0.5, 0.5])
    assert p_at(60, 100, 2.0, None) == 2.0


def test_ci_l0_counts_subcomponents_above_the_threshold_per_input():
    g = torch.tensor([[0.05, 0.2, 0.9], [0.0, 0.0, 0.11]])
    assert ci_l0(g, 0.1) == pytest.approx(1.5)
