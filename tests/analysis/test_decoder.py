"""Decoder statistics computed block by block equal the direct full-matrix computation."""

from __future__ import annotations

import pytest
import torch

from lm_saes.analysis import decoder
from lm_saes.analysis.decoder import decoder_norms, logit_effects, nearest_features


@pytest.fixture
def small_blocks(monkeypatch):
    monkeypatch.setattr(decoder, "BLOCK_ELEMENTS", 7 * 50)  # blocks of 7 rows of a 50-wide matrix


def test_logit_effects_in_blocks_equal_the_full_product(small_blocks):
    g = torch.Generator().manual_seed(0)
    W_dec, W_U = torch.randn(23, 8, generator=g), torch.randn(8, 50, generator=g)
    effects = logit_effects(W_dec, W_U, 4)
    full = W_dec @ W_U
    assert torch.allclose(effects.positive.values, full.topk(4).values)
    assert torch.equal(effects.positive.indices, full.topk(4).indices)
    assert torch.allclose(effects.negative.values, full.topk(4, largest=False).values)
    assert torch.equal(effects.negative.indices, full.topk(4, largest=False).indices)


def test_nearest_features_in_blocks_equal_full_cosine_and_skip_themselves(small_blocks):
    g = torch.Generator().manual_seed(1)
    W_dec = torch.randn(50, 6, generator=g)
    W_dec[5] = 0  # a zero row has cosine 0 with everything
    W_dec[9] = 3 * W_dec[8]  # a parallel pair: cosine 1
    near = nearest_features(W_dec, 3)
    unit = W_dec / W_dec.norm(dim=1, keepdim=True).clamp(min=1e-12)
    full = (unit @ unit.T).fill_diagonal_(-float("inf"))
    assert torch.allclose(near.values, full.topk(3).values, atol=1e-6)
    assert near.indices[8, 0] == 9 and near.indices[9, 0] == 8
    assert near.values[8, 0] == pytest.approx(1.0)
    assert not (near.indices == torch.arange(50)[:, None]).any()
    assert torch.allclose(decoder_norms(W_dec), W_dec.norm(dim=1))
