"""TMS: the 5-2 target learns the pentagon; tied weights, fixed identity layers and the data are as defined."""

import math

import pytest
import torch

from lm_saes.toys.config import TMSConfig
from lm_saes.toys.directory import load_toy
from lm_saes.toys.tms import TMSModel, sample, single_features


def test_the_5_2_target_puts_its_five_features_on_a_pentagon(tms_5_2_dir):
    toy = load_toy(tms_5_2_dir)
    W = toy.model.linear1.weight.detach()  # [2, 5]: each feature's hidden direction
    norms = W.norm(dim=0)
    assert ((norms > 1.0) & (norms < 1.3)).all(), norms  # ~1.13 (the shared doc's measurement)
    angles = torch.atan2(W[1], W[0]).sort().values
    gaps = torch.diff(torch.cat([angles, angles[:1] + 2 * math.pi]))
    torch.testing.assert_close(gaps, torch.full((5,), 2 * math.pi / 5), atol=0.1, rtol=0)
    metrics = toy.spec.metrics(toy.model, toy.spec.data(toy.config).test)
    assert metrics["loss"] < 0.003
    assert torch.equal(toy.model.linear2.weight, toy.model.linear1.weight.T)  # tied
    assert "linear2.weight" not in toy.model.state_dict()


def test_identity_layers_stay_fixed_and_untied_weights_are_free(tmp_path, toy_example):
    out = toy_example(tmp_path / "id", "toy_tms_5-2.toml", "steps=30", "toy.n_hidden_layers=2",
                            "toy.tied=false", "toy.n_train=64", "toy.n_test=64")
    toy = load_toy(out)
    for layer in toy.model.hidden_layers:
        assert torch.equal(layer.weight, torch.eye(2)) and not layer.weight.requires_grad
    assert toy.model.linear2.weight.shape == (5, 2) and "linear2.weight" in toy.model.state_dict()
    x = torch.rand(3, 5)
    expected = torch.relu(x @ toy.model.linear1.weight.T @ toy.model.linear2.weight.T + toy.model.linear2.bias)
    torch.testing.assert_close(toy.model(x), expected)


def test_features_are_on_with_their_probability_and_uniform_when_on():
    cfg = TMSConfig(n_features=40, n_hidden=10, feature_probability=0.05)
    x = sample(cfg, 20_000, torch.Generator().manual_seed(0)).features
    on = x > 0
    assert float(on.float().mean()) == pytest.approx(0.05, abs=0.002)
    assert float(x[on].mean()) == pytest.approx(0.5, abs=0.01) and float(x.max()) <= 1
    assert torch.equal(single_features(3), torch.eye(3) * 0.75)
    assert TMSModel(cfg)(x[:4]).shape == (4, 40)
