"""Synthetic superposition data and MMCS: hand checks, and a TopK SAE that recovers the features."""

import pytest
import torch

from lm_saes.data.synthetic import batches, make_features, sample
from lm_saes.evaluation.metrics import mmcs


def test_mmcs_by_hand():
    true = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    learned = torch.tensor([[2.0, 0.0], [1.0, 1.0]])  # cosines: f0 -> 1.0; f1 -> max(0, 1/sqrt 2)
    assert mmcs(learned, true) == pytest.approx((1.0 + 2**-0.5) / 2)
    assert mmcs(true, true) == pytest.approx(1.0)


def test_features_are_unit_and_probabilities_match_mean_active():
    f = make_features(n_features=40, d=8, mean_active=3.0, decay=1.0)
    assert torch.allclose(f.directions.norm(dim=1), torch.ones(40))
    assert float(f.probabilities.sum()) == pytest.approx(3.0)
    assert f.probabilities[0] > f.probabilities[-1]  # power-law frequencies


def test_samples_are_sparse_combinations_of_the_directions():
    f = make_features(n_features=40, d=8, mean_active=3.0)
    g = torch.Generator().manual_seed(0)
    x = sample(f, 20_000, g)
    assert x.shape == (20_000, 8)
    # E||x||^2 = sum_i p_i E[m^2] + sum_{i != j} p_i p_j E[m]^2 <d_i, d_j>
    gram = f.directions @ f.directions.T
    p, m1, m2 = f.probabilities, 0.5, 1 / 3  # E[m], E[m^2] for m ~ U(0, 1)
    expected = float((p * m2).sum() + (torch.outer(p * m1, p * m1) * (gram - torch.diag(torch.diag(gram)))).sum())
    assert float(x.pow(2).sum(1).mean()) == pytest.approx(expected, rel=0.05)


@pytest.mark.slow
def test_topk_sae_recovers_features_in_superposition(tmp_path):
    from lm_saes.config import TrainConfig
    from lm_saes.dictionaries import Dictionary
    from lm_saes.training.train import train

    features = make_features(n_features=64, d=32, mean_active=3.0, seed=0)
    cfg = TrainConfig.model_validate(dict(
        dictionary={"kind": "topk", "d_sae": 128, "k": 4, "aux_k": 32}, output_dir=tmp_path,
        total_tokens=1024 * 600, batch_size=1024, lr=3e-3, lr_warmup_steps=20, progress=False,
        dead_after_tokens=20_000,
    ))
    train(cfg, batches=batches(features, 1024, seed=1))
    learned = Dictionary.from_pretrained(tmp_path).W_dec.detach()
    assert mmcs(learned, features.directions) >= 0.9
