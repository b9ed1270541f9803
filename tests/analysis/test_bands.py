"""Band membership at the band edges, and the random priorities that make band samples uniform."""

from __future__ import annotations

import torch

from lm_saes.analysis.bands import band_index, priorities


def test_bands_are_left_open_right_closed_and_the_max_is_in_the_top_band():
    top = torch.full((6,), 2.0)
    values = torch.tensor([2.0, 1.5, 1.5000001, 0.5, 1e-9, 1.0])  # 4 bands of width 0.5
    assert band_index(values, top, 4).tolist() == [3, 2, 3, 0, 0, 1]


def test_priorities_are_reproducible_32_bit_and_seeded():
    contexts, features = torch.arange(1000), torch.full((1000,), 3)
    a = priorities(0, contexts, features)
    assert torch.equal(a, priorities(0, contexts, features))
    assert not torch.equal(a, priorities(1, contexts, features))
    assert not torch.equal(a, priorities(0, contexts, features + 1))
    assert a.min() >= 0 and a.max() < 2**32 and len(a.unique()) == 1000
    big = priorities(0, contexts + 2**40, features)  # context ids beyond 32 bits matter too
    assert not torch.equal(a, big)


def test_lowest_priorities_draw_every_context_of_a_band_equally_often():
    """20 contexts in a band, 5 kept: over 2000 seeds each is kept ~500 times (sd ~19)."""
    contexts = torch.tensor([3, 17, 18, 40, 41, 42, 99, 100, 101, 250, 251, 300, 301, 302, 303, 500, 777,
                             778, 1000, 4096])
    kept = torch.zeros(len(contexts))
    pair_kept = 0  # contexts 0 and 1 kept together: expected 2000 * (5/20) * (4/19) ~ 105
    for seed in range(2000):
        order = priorities(seed, contexts, torch.full_like(contexts, 7)).argsort()[:5]
        kept[order] += 1
        pair_kept += int(0 in order and 1 in order)
    assert ((kept - 500).abs() < 100).all(), kept.tolist()
    assert 50 < pair_kept < 170
