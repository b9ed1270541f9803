"""The induction task: the data repeats after a random gap, the score reads the repeated half, and two
attention layers learn it where one cannot."""

import pytest
import torch

from lm_saes.toys.config import InductionConfig
from lm_saes.toys.directory import load_toy
from lm_saes.toys.induction import BOS, context_length, metrics, sample


def test_each_context_repeats_its_sequence_after_a_random_gap():
    cfg = InductionConfig(vocab_size=20, half_length=5, max_gap=4)
    data = sample(cfg, 200, torch.Generator().manual_seed(0))
    assert data.tokens.shape == (200, context_length(cfg)) == (200, 15)
    assert (data.tokens[:, 0] == BOS).all() and (data.tokens[:, 1:] != BOS).all()
    for tokens, start in zip(data.tokens, data.repeat_start):
        assert torch.equal(tokens[start:start + 5], tokens[1:6])
    assert set(data.repeat_start.tolist()) == {6, 7, 8, 9, 10}  # gaps 0..4


class Copier(torch.nn.Module):
    """Predicts perfectly by looking the repeat up (what induction computes)."""

    def __init__(self, cfg, data):
        super().__init__()
        self.cfg, self.data = cfg, data

    def forward(self, tokens):
        logits = torch.zeros(*tokens.shape, self.cfg.vocab_size)
        nxt = torch.roll(tokens, -1, dims=1)
        logits.scatter_(2, nxt[..., None], 10.0)
        return logits


def test_the_score_is_the_accuracy_on_the_repeated_half():
    cfg = InductionConfig(vocab_size=20, half_length=5, max_gap=4)
    data = sample(cfg, 50, torch.Generator().manual_seed(1))
    assert metrics(Copier(cfg, data), data)["accuracy"] == 1.0
    blind = torch.nn.Module()
    blind.cfg = cfg
    blind.forward = lambda tokens: torch.zeros(*tokens.shape, cfg.vocab_size)
    assert metrics(blind, data)["loss"] == pytest.approx(torch.log(torch.tensor(20.0)).item(), rel=1e-5)


@pytest.mark.slow
def test_two_attention_layers_learn_induction_and_one_cannot(tmp_path, toy_example):
    common = ["steps=400", "toy.n_train=256", "toy.n_test=1024"]
    two = load_toy(toy_example(tmp_path / "two", "toy_induction.toml", *common))
    one = load_toy(toy_example(tmp_path / "one", "toy_induction.toml", *common, "toy.n_layers=1"))
    test = two.spec.data(two.config).test
    acc_two, acc_one = two.spec.metrics(two.model, test)["accuracy"], one.spec.metrics(one.model, test)["accuracy"]
    assert acc_two > 0.8 and acc_one < 0.5, (acc_two, acc_one)
