"""Residual MLP: labels, the fixed embedding, and a small model learning to compute its features."""

import torch

from lm_saes.toys.config import ResidMLPConfig
from lm_saes.toys.directory import load_toy
from lm_saes.toys.resid_mlp import ResidMLP, identity_modules, sample


def test_labels_are_the_input_plus_the_activation_of_each_feature():
    cfg = ResidMLPConfig(n_features=6, d_embed=8, d_mlp=3, feature_probability=0.5)
    data = sample(cfg, 100, torch.Generator().manual_seed(0))
    torch.testing.assert_close(data.labels, data.features + torch.relu(data.features))
    assert float(data.features.min()) >= -1 and float(data.features.max()) <= 1 and (data.features < 0).any()
    random = cfg.model_copy(update={"label_coefficients": "random"})
    scaled = sample(random, 100, torch.Generator().manual_seed(0))
    assert not torch.equal(scaled.labels, data.labels)
    assert identity_modules(ResidMLPConfig(n_layers=3)) == ["layers.0.mlp_in", "layers.1.mlp_in", "layers.2.mlp_in"]


def test_the_embedding_is_fixed_unit_rows_read_out_by_its_transpose():
    model = ResidMLP(ResidMLPConfig(n_features=6, d_embed=8, d_mlp=3))
    torch.testing.assert_close(model.W_E.norm(dim=1), torch.ones(6))
    assert torch.equal(model.W_U, model.W_E.T) and not list(n for n, _ in model.named_parameters() if "W_" in n)


def test_a_small_residual_mlp_learns_its_features(tmp_path, toy_example):
    overrides = ["toy.n_features=20", "toy.d_embed=100", "toy.d_mlp=10", "toy.feature_probability=0.05",
                 "toy.n_train=512", "toy.n_test=2048", "batch_size=256"]
    untrained = load_toy(toy_example(tmp_path / "a", "toy_resid_mlp1.toml", "steps=1", "lr=1e-9", *overrides))
    trained = load_toy(toy_example(tmp_path / "b", "toy_resid_mlp1.toml", "steps=300", *overrides))
    test = trained.spec.data(trained.config).test
    model = trained.model
    without_mlp = float((test.features @ model.W_E @ model.W_U - test.labels).pow(2).mean())  # the residual alone
    after = trained.spec.metrics(model, test)["loss"]
    assert after < 0.6 * without_mlp, (without_mlp, after)  # its 10 neurons compute much of 20 features' ReLUs
    assert torch.equal(untrained.model.W_E, model.W_E)  # the same seed, never trained
