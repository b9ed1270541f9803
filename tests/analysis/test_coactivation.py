"""Co-firing counts of features and each feature's most frequent partners, against hand counts."""

import pytest
import torch

from lm_saes.analysis.coactivation import CoFiring, top_coactivations


def test_pairs_are_counted_over_tokens_and_ranked_with_p_and_jaccard():
    fired = torch.tensor([[1, 1, 0, 0],  # token 0: features 0 and 1
                          [1, 1, 1, 0],  # token 1: 0, 1, 2
                          [1, 0, 1, 0],  # token 2: 0, 2
                          [0, 0, 1, 0]], dtype=torch.bool)  # feature 3 never fires
    cofiring = CoFiring(4, torch.device("cpu"))
    cofiring.update(fired[:2])
    cofiring.update(fired[2:])  # batches add up
    assert cofiring.counts.tolist() == [[3, 2, 2, 0], [2, 2, 1, 0], [2, 1, 3, 0], [0, 0, 0, 0]]
    top = top_coactivations(cofiring.counts, top=2)
    # feature 0 fired on 3 tokens; with 1 on 2 of them (1 fired on 2): p = 2/3, jaccard = 2 / (3 + 2 - 2)
    assert top[0] == [{"index": 1, "count": 2, "p": pytest.approx(2 / 3), "jaccard": pytest.approx(2 / 3)},
                      {"index": 2, "count": 2, "p": pytest.approx(2 / 3), "jaccard": pytest.approx(2 / 4)}]  # tie: lower index first
    assert [(c["index"], c["count"], c["p"]) for c in top[1]] == [(0, 2, 1.0), (2, 1, 0.5)]
    assert top[3] == []  # never fired: no partner
    assert [c["index"] for c in top_coactivations(cofiring.counts, top=8)[2]] == [0, 1]  # only those that fired with it
