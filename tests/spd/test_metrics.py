"""Ground-truth metrics against hand-computed values."""

import math

import pytest
import torch

from lm_saes.spd.metrics import feature_match, feature_pieces, identity_ci_error


def test_feature_pieces_are_a_subcomponents_share_of_each_feature():
    V = torch.tensor([[1.0], [2.0]])  # [d_in 2, C 1]
    U = torch.tensor([[3.0, 4.0, 5.0]])  # [C 1, d_out 3]
    assert feature_pieces(V, U, "in")[0].tolist() == [[3.0, 4.0, 5.0], [6.0, 8.0, 10.0]]  # V[i] U
    assert feature_pieces(V, U, "out")[0].tolist() == [[3.0, 6.0], [4.0, 8.0], [5.0, 10.0]]  # U[i] V


def test_mmcs_and_ml2r_of_a_perfect_a_scaled_and_a_rotated_decomposition():
    W = torch.tensor([[2.0, 0.0], [0.0, 1.0]])  # features on the input axis: rows [2, 0] and [0, 1]
    alive = torch.tensor([True, True, False])
    V = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])  # subcomponent c reads feature c (the third is dead)
    U = torch.tensor([[2.0, 0.0], [0.0, 1.0], [5.0, 5.0]])
    exact = feature_match(V, U, W, "in", alive)
    assert (exact.mmcs, exact.ml2r, exact.best) == (pytest.approx(1.0), pytest.approx(1.0), [0, 1])
    half = feature_match(V, U * 0.5, W, "in", alive)
    assert half.mmcs == pytest.approx(1.0) and half.ml2r == pytest.approx(0.5)
    rotated = torch.tensor([[1.0, 1.0], [0.0, 1.0], [5.0, 0.0]])  # feature 0's piece at 45 degrees, norm sqrt 2
    tilted = feature_match(V, rotated, W, "in", alive)
    assert tilted.cosines == pytest.approx([1 / math.sqrt(2), 1.0])
    assert tilted.ml2r == pytest.approx((math.sqrt(2) / 2 + 1) / 2)
    with_dead = feature_match(V, rotated, W, "in", torch.tensor([True, True, True]))
    assert with_dead.best[0] == 2  # the dead one matches better, and only live ones count


def test_identity_ci_error_counts_entries_off_the_best_assignment():
    perfect = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 0.95], [0.0, 0.0, 0.0]])[:2]  # 2 features, 3 subcomponents
    assert identity_ci_error(perfect) == 0
    extra = perfect.clone()
    extra[0, 0] = 0.5  # feature 0 also lights subcomponent 0
    assert identity_ci_error(extra) == 1
    weak = perfect.clone()
    weak[1, 2] = 0.6  # its own subcomponent only at 0.6
    assert identity_ci_error(weak) == 1
    shared = torch.tensor([[1.0, 0.0], [1.0, 0.0]])  # both features on one subcomponent
    assert identity_ci_error(shared) == 2  # one feature gets the unused column (0: missing) and lights the other (extra)
