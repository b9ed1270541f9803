"""Best matches, MMCS both ways and histograms, against hand-computed values."""

import math

import pytest
import torch

from lm_saes.compare.similarity import (
    compare, factor_similarities, flattened_similarities, histogram_edges, kept, rank_one_similarities,
)
from lm_saes.evaluation.metrics import cosine_similarities, mmcs


def test_best_matches_mmcs_both_ways_and_histogram_by_hand():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    b = torch.tensor([[3.0, 0.0], [0.6, 0.8], [-1.0, 0.0]])
    c = compare(cosine_similarities(a, b), [0, 1], [0, 1, 2], bins=4)
    # a0 best b0 (cos 1); a1 best b1 (0.8): MMCS 0.9. b0 -> a0 (1), b1 -> a1 (0.8), b2 -> a1 (0 beats -1): 0.6
    assert c.a_to_b.best == [0, 1] and c.a_to_b.cosines == pytest.approx([1.0, 0.8])
    assert c.a_to_b.mmcs == pytest.approx(0.9) and c.b_to_a.mmcs == pytest.approx(0.6)
    assert c.b_to_a.best == [0, 1, 1]
    assert histogram_edges(4) == pytest.approx([-1.0, -0.5, 0.0, 0.5, 1.0])
    assert c.a_to_b.histogram == [0, 0, 0, 2] and c.b_to_a.histogram == [0, 0, 1, 2]
    assert c.a_to_b.mmcs == pytest.approx(mmcs(b, a))  # the evaluation's MMCS, B in the truth's place


def test_indices_name_rows_of_the_full_sets():
    a = torch.tensor([[0.0, 1.0]])
    b = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    c = compare(cosine_similarities(a, b), [7], [3, 5], bins=2)
    record = c.as_json()
    assert record["a_to_b"]["matches"] == [{"index": 7, "best": 5, "cosine": pytest.approx(1.0)}]
    assert [m["best"] for m in record["b_to_a"]["matches"]] == [7, 7] and (record["n_a"], record["n_b"]) == (1, 2)
    assert kept(torch.tensor([False, True, True]), 3) == [1, 2] and kept(None, 2) == [0, 1]


def test_an_empty_side_has_no_mmcs():
    c = compare(torch.zeros(0, 3), [], [0, 1, 2], bins=2)
    assert math.isnan(c.a_to_b.mmcs) and c.a_to_b.best == []
    assert math.isnan(c.b_to_a.mmcs) and c.b_to_a.best == [-1, -1, -1]


def test_rank_one_similarity_equals_the_flattened_matrices_slow_twin():
    g = torch.Generator().manual_seed(0)
    V_a, U_a = torch.randn(5, 4, generator=g), torch.randn(4, 3, generator=g)
    V_b, U_b = torch.randn(5, 6, generator=g), torch.randn(6, 3, generator=g)
    fast, slow = rank_one_similarities(V_a, U_a, V_b, U_b), flattened_similarities(V_a, U_a, V_b, U_b)
    assert fast.shape == (4, 6) and torch.allclose(fast, slow, atol=1e-6)
    # a subcomponent with both factors negated is the same matrix: weight cosine 1, factor |cosine| 1
    assert torch.allclose(rank_one_similarities(V_a, U_a, -V_a, -U_a).diagonal(), torch.ones(4), atol=1e-6)
    assert torch.allclose(factor_similarities(U_a, -U_a).diagonal(), torch.ones(4), atol=1e-6)
