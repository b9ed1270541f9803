"""Fourier analysis of modular addition: norms by Parseval, planted frequencies found and kept,
clock versus pizza on hand-built signals, and the grokked model's key frequencies and ablation."""

import math

import pytest
import torch

from lm_saes.llc.fourier import (
    classify, fold, fourier_report, frequency_norms, keep_frequencies, key_frequencies, spectrum_over_a,
)
from lm_saes.toys.directory import load_toy

P = 53


def wave(k: int, p: int = P) -> torch.Tensor:
    """[p, 2]: cos and sin of frequency k over the residues."""
    x = torch.arange(p, dtype=torch.float64) * 2 * math.pi * k / p
    return torch.stack([x.cos(), x.sin()], dim=1)


def test_frequency_norms_obey_parseval_and_locate_a_planted_wave():
    embedding = torch.randn(P, 6, generator=torch.Generator().manual_seed(0))
    norms = frequency_norms(embedding)
    assert norms.shape == (P // 2 + 1,)
    assert float(norms.pow(2).sum()) == pytest.approx(float(embedding.pow(2).sum()), rel=1e-5)
    planted = frequency_norms(wave(7).float())
    assert int(planted.argmax()) == 7 and float(planted[7]) == pytest.approx(math.sqrt(P), rel=1e-5)
    even = frequency_norms(torch.randn(12, 3, generator=torch.Generator().manual_seed(1)))  # p even: k = p/2 once
    assert even.shape == (7,)


def test_key_frequencies_stand_out_of_the_noise_and_ablation_keeps_them():
    noise = 0.05 * torch.randn(P, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    embedding = torch.cat([wave(4), wave(17), wave(23), 0 * wave(1)], dim=1) + noise
    keys = key_frequencies(frequency_norms(embedding))
    assert keys == [4, 17, 23]
    assert key_frequencies(frequency_norms(noise)) == []  # nothing stands out of pure noise
    kept = keep_frequencies(embedding, keys)
    assert frequency_norms(kept)[[1, 2, 3, 5]].max() < 1e-6  # the others are gone
    torch.testing.assert_close(frequency_norms(kept)[keys], frequency_norms(embedding)[keys])
    torch.testing.assert_close(keep_frequencies(kept, keys), kept)  # a projection


def test_clock_and_pizza_are_told_apart_by_where_the_spectrum_peaks():
    a = torch.arange(P, dtype=torch.float64)[:, None, None]
    b = torch.arange(P, dtype=torch.float64)[None, :, None]
    w = 2 * math.pi * 5 / P
    clock = torch.cat([torch.cos(w * (a + b)), torch.sin(w * (a + b))], dim=2)  # [a, b, 2]: frequency k in a
    pizza = torch.cat([torch.cos(2 * w * a) + torch.cos(2 * w * b), torch.cos(w * (a - b)).abs()], dim=2)  # 2k
    assert classify(spectrum_over_a(clock), [5], P)["algorithm"] == "clock"
    verdict = classify(spectrum_over_a(pizza), [5], P)
    assert verdict["algorithm"] == "pizza" and verdict["per_key"][5]["power_2k"] > verdict["per_key"][5]["power_k"]
    assert fold(2 * 40, P) == 26 and fold(60, P) == 7


@pytest.mark.slow
def test_the_grokked_model_computes_with_a_few_key_frequencies(modular_addition_dir):
    toy = load_toy(modular_addition_dir)
    data = toy.spec.data(toy.config)
    report = fourier_report(toy.model, data.train, data.test)
    assert 1 <= len(report.keys) <= 6
    assert report.ablated["train"]["accuracy"] > 0.95 and report.ablated["test"]["accuracy"] > 0.95
    everything_but = [k for k in range(1, P // 2 + 1) if k not in report.keys]
    from lm_saes.llc.fourier import ablated_metrics

    assert ablated_metrics(toy.model, everything_but, data.test)["accuracy"] < 0.5  # the keys are what matters
    assert report.algorithm["algorithm"] in ("clock", "pizza") and set(report.algorithm["per_key"]) == set(report.keys)
    assert torch.equal(load_toy(modular_addition_dir).model.embed.weight, toy.model.embed.weight)  # restored
