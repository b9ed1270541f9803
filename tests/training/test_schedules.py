"""Schedules and dead-feature tracking, against values computed by hand."""

import math

import pytest
import torch

from lm_saes.config import TrainConfig
from lm_saes.training.dead import DeadFeatureTracker
from lm_saes.training.schedules import (
    checkpoint_interval, dead_after_tokens, lr_at, peak_lr, resolved_schedule, sparsity_scale_at, total_steps,
    warmup_steps,
)


def config(**kw) -> TrainConfig:
    base = dict(dictionary={"kind": "topk", "d_sae": 8, "k": 2}, cache="c", output_dir="o",
                total_tokens=1000, batch_size=10, lr=1.0, lr_warmup_steps=10, lr_decay_fraction=0.2)
    return TrainConfig.model_validate(base | kw)


def test_lr_warmup_constant_then_linear_decay():
    cfg = config()  # 100 steps; decay over the last 20 (steps 80..99)
    assert total_steps(cfg) == 100
    assert lr_at(0, cfg) == pytest.approx(0.1) and lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(50, cfg) == 1.0 and lr_at(79, cfg) == 1.0
    assert lr_at(80, cfg) == pytest.approx(1.0) and lr_at(90, cfg) == pytest.approx(0.5)
    assert lr_at(99, cfg) == pytest.approx(0.05)


def test_cosine_and_constant_decay():
    cos = config(lr_decay="cosine")
    assert lr_at(90, cos) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_at(99, config(lr_decay="constant")) == 1.0


def test_sparsity_warmup():
    assert sparsity_scale_at(0, config(sparsity_warmup_steps=0)) == 1.0
    cfg = config(sparsity_warmup_steps=4)
    assert [sparsity_scale_at(s, cfg) for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    default = config()  # 5% of 100 steps
    assert [sparsity_scale_at(s, default) for s in (0, 4, 5)] == [0.2, 1.0, 1.0]


def test_defaults_scale_with_the_run():
    """Unset fields resolve from the run: lr from d_sae, warmups and the dead window from its length."""
    cfg = config(lr=None, lr_warmup_steps=None, dictionary={"kind": "topk", "d_sae": 4096, "k": 2})
    assert peak_lr(cfg) == pytest.approx(2e-4 * 2)  # 2e-4 / sqrt(4096 / 16384)
    assert warmup_steps(cfg) == 1  # 1% of 100 steps
    assert lr_at(0, cfg) == pytest.approx(4e-4) and lr_at(99, cfg) == pytest.approx(4e-4 * 0.05)
    assert dead_after_tokens(cfg) == 333  # a third of 1,000 tokens
    assert dead_after_tokens(config(total_tokens=10**10, batch_size=4096)) == 10_000_000  # Gao et al.'s cap
    assert dead_after_tokens(config(total_tokens=100, batch_size=100)) == 100  # never under one batch
    assert dead_after_tokens(config(dead_after_tokens=7)) == 7
    assert resolved_schedule(cfg) == {"lr": pytest.approx(4e-4), "lr_warmup_steps": 1, "steps": 100,
                                      "lr_decay_steps": 20, "sparsity_warmup_steps": 5, "dead_after_tokens": 333,
                                      "checkpoint_every": 10}


def test_dead_features_counted_in_tokens_since_last_firing():
    tracker = DeadFeatureTracker(d_sae=3, dead_after=5)
    tracker.update(torch.tensor([True, False, False]), n_tokens=2)  # feature 0 fired
    assert tracker.tokens_since_fired.tolist() == [0, 2, 2]
    tracker.update(torch.tensor([False, True, False]), n_tokens=3)  # feature 1 fired
    assert tracker.tokens_since_fired.tolist() == [3, 0, 5]
    assert tracker.dead_mask().tolist() == [False, False, True]
    assert tracker.dead_fraction() == pytest.approx(1 / 3)


def test_config_rejects_less_than_one_batch():
    with pytest.raises(Exception, match="less than one batch"):
        config(total_tokens=5)


def test_checkpoints_by_default_every_tenth_of_the_run():
    def interval(**fields):
        return checkpoint_interval(config(batch_size=4096, **fields))

    assert interval(total_tokens=1_000_000) == 24  # the quick start's 244 steps
    assert interval(total_tokens=4096 * 5) == 1  # shorter than ten steps: every step
    assert interval(total_tokens=1_000_000, checkpoint_every=7) == 7
    assert interval(total_tokens=1_000_000, checkpoint_every=0) == 0  # only at the end
