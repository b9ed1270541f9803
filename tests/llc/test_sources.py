"""Model directories as losses: which kind a directory is, and each kind's loss and data, run
through the vectorised sampler (its gradients equal the chain-by-chain ones on real models)."""

import json
import shutil

import pytest
import torch

from lm_saes.activations.reader import open_cache
from lm_saes.config import DataConfig
from lm_saes.dictionaries import Dictionary
from lm_saes.dictionaries.base import reconstruction_mse, token_factors
from lm_saes.errors import ConfigError, LmSaesError
from lm_saes.llc.config import LLCConfig
from lm_saes.llc.estimator import Layout, chain_gradients, flat_loss
from lm_saes.llc.sources import (
    DICTIONARY, LANGUAGE_MODEL, TOY, directory_kind, epoch_rows, functional_loss, open_source,
)

CPU = torch.device("cpu")


def vectorised_equals_loop(source, chains: int = 3) -> None:
    """One step's gradients of a few perturbed chains: vmapped against one chain at a time."""
    loss_fn, params = functional_loss(source.model, source.loss)
    layout = Layout.of(params)
    w = layout.flatten(params).repeat(chains, 1)
    w = w + 1e-3 * torch.randn(w.shape, generator=torch.Generator().manual_seed(0))
    batch = next(source.batches(4, 0))
    fast = chain_gradients(flat_loss(loss_fn, layout), w, batch, vectorize=True)
    slow = chain_gradients(flat_loss(loss_fn, layout), w, batch, vectorize=False)
    torch.testing.assert_close(fast[1], slow[1], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fast[0], slow[0], rtol=1e-4, atol=1e-6)


def test_directory_kinds_and_the_error_for_anything_else(modular_addition_dir, trained_dictionary, model_dir, tmp_path):
    assert directory_kind(modular_addition_dir) == TOY
    assert directory_kind(trained_dictionary) == DICTIONARY
    assert directory_kind(model_dir) == LANGUAGE_MODEL
    (tmp_path / "config.json").write_text(json.dumps({"artifact": "sweep"}))
    with pytest.raises(LmSaesError, match="holds a 'sweep' artifact; `lm-saes llc` estimates a toy directory"):
        directory_kind(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(LmSaesError, match="no config.json lm-saes knows"):
        directory_kind(tmp_path)
    with pytest.raises(LmSaesError, match="does not exist"):
        directory_kind(tmp_path / "nope")


def test_the_functional_loss_is_the_models_loss_with_other_parameters(modular_addition_dir):
    source = open_source(LLCConfig(model=modular_addition_dir), CPU)
    loss_fn, params = functional_loss(source.model, source.loss)
    batch = next(source.batches(64, 0))
    shifted = {k: v + 0.01 for k, v in params.items()}
    with torch.no_grad():
        assert float(loss_fn(params, batch)) == pytest.approx(float(source.loss(source.model, batch)))
        for p in source.model.parameters():
            p.add_(0.01)
        assert float(loss_fn(shifted, batch)) == pytest.approx(float(source.loss(source.model, batch)), rel=1e-6)
    assert source.examples == int(0.95 * 53**2)


def test_epoch_rows_visit_every_example_once_per_epoch():
    batches = epoch_rows(10, 3, seed=0)
    epoch = torch.cat([next(batches) for _ in range(3)])
    assert len(set(epoch.tolist())) == 9  # 3 full batches of 10 examples, the remainder dropped
    with pytest.raises(ConfigError, match="sgld.batch_size=11 exceeds the 10 examples"):
        next(epoch_rows(10, 11, seed=0))


def test_a_language_model_samples_next_token_loss_on_its_text(model_dir, dataset_file):
    data = DataConfig(path=str(dataset_file), context_size=32, max_tokens=32 * 40)
    source = open_source(LLCConfig(model=model_dir, data=data), CPU)
    assert source.kind == LANGUAGE_MODEL and source.examples == 40
    batch = next(source.batches(4, 0))
    assert batch.shape == (4, 32)
    vectorised_equals_loop(source)
    with pytest.raises(ConfigError, match="no corpus/train.jsonl"):
        open_source(LLCConfig(model=model_dir), CPU)


def test_a_dictionary_samples_its_training_loss_on_its_cache(trained_dictionary):
    source = open_source(LLCConfig(model=trained_dictionary), CPU)
    cache = json.loads((trained_dictionary / "train_config.json").read_text())["cache"]
    assert source.kind == DICTIONARY and source.examples == open_cache(cache).manifest.n_tokens
    folded = Dictionary.from_pretrained(trained_dictionary)
    scale = json.loads((trained_dictionary / "config.json").read_text())["training_scales"]["output"]
    x, y = next(source.batches(256, 0))
    with torch.no_grad():  # a TopK SAE's training loss is the MSE in training units: t^2 x the raw MSE
        raw = reconstruction_mse(folded(x).recon, y)
        assert float(source.loss(source.model, (x, y))) == pytest.approx(scale**2 * float(raw), rel=1e-4)
    vectorised_equals_loop(source)


def test_a_token_normalising_dictionary_samples_its_loss_on_normalised_tokens(trained_dictionary, tmp_path):
    twin = tmp_path / "twin"
    shutil.copytree(trained_dictionary, twin)
    meta = json.loads((twin / "config.json").read_text())
    meta["dictionary"]["normalize_tokens"] = True
    meta["training_scales"] = {"input": 1.0, "output": 1.0}  # such a dictionary trains at input scale 1
    (twin / "config.json").write_text(json.dumps(meta))
    source = open_source(LLCConfig(model=twin), CPU)
    folded = Dictionary.from_pretrained(twin)
    x, y = next(source.batches(256, 0))
    rho = token_factors(x)
    with torch.no_grad():  # the loss of each token brought to norm sqrt(d), as training saw it
        expected = reconstruction_mse(folded(x).recon * rho, y * rho)
        assert float(source.loss(source.model, (x, y))) == pytest.approx(float(expected), rel=1e-4)
