"""Fourier structure of a modular-addition model (``lm_saes.toys.modular_addition``).

Method. The embedding E [p, d] is a function of the residue x = 0..p-1; its discrete Fourier
transform over x, F_f = sum_x E_x exp(-2 pi i f x / p), is real-symmetric (F_{p-f} = conj F_f), so
frequency k = 1..(p-1)/2 stands for the pair {k, p - k}. Its norm is

    ||E||_k = sqrt(c_k / p) |F_k|,   c_0 = 1, c_k = 2 otherwise (c = 1 at k = p/2 for even p),

so that sum_k ||E||_k^2 = ||E||_F^2 (Parseval). The key frequencies are the non-constant ones
whose norm is at least ``threshold`` times the median non-constant norm (the unused frequencies
hold noise of about the median; none stand out in an unstructured model). Ablation keeps only the
constant and the key frequencies of E (inverse transform of the masked spectrum) and re-measures
loss and accuracy; a model that computes with those frequencies keeps its accuracy.

Clock or pizza (Zhong et al. 2023): the vector the unembedding reads, h(a, b), is transformed
over a for every b (power summed over b and the width): a "clock" carries each key frequency k
there, a "pizza" carries 2k mod p more strongly than k.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from jaxtyping import Float
from torch import Tensor

from lm_saes.toys.modular_addition import ModularAdditionMLP, PairData, all_pairs, metrics


def frequency_norms(embedding: Float[Tensor, "p d"]) -> Float[Tensor, "frequencies"]:
    """||E||_k for k = 0..p // 2 (see the module docstring); their squares sum to ||E||_F^2."""
    p = embedding.shape[0]
    spectrum = torch.fft.rfft(embedding.double(), dim=0)  # [p // 2 + 1, d]
    weight = torch.full((spectrum.shape[0],), 2.0, dtype=torch.float64)
    weight[0] = 1.0
    if p % 2 == 0:
        weight[-1] = 1.0
    return (weight * spectrum.abs().pow(2).sum(1) / p).sqrt().float()


def key_frequencies(norms: Float[Tensor, "frequencies"], threshold: float = 3.0) -> list[int]:
    """Frequencies k >= 1 whose norm is at least ``threshold`` times the median of the norms at k >= 1."""
    rest = norms[1:]
    return [int(k) + 1 for k in (rest >= threshold * rest.median()).nonzero().flatten()]


def keep_frequencies(embedding: Float[Tensor, "p d"], keep: list[int]) -> Float[Tensor, "p d"]:
    """E with every frequency but 0 and ``keep`` (with their mirrors p - k) removed."""
    p = embedding.shape[0]
    spectrum = torch.fft.rfft(embedding.double(), dim=0)
    mask = torch.zeros(spectrum.shape[0], dtype=torch.bool)
    mask[[0, *keep]] = True
    return torch.fft.irfft(spectrum * mask[:, None], n=p, dim=0).to(embedding.dtype)


@torch.no_grad()
def ablated_metrics(model: ModularAdditionMLP, keep: list[int], examples: PairData) -> dict[str, float]:
    """Loss and accuracy with the embedding reduced to frequencies 0 and ``keep``."""
    original = model.embed.weight.detach().clone()
    try:
        model.embed.weight.copy_(keep_frequencies(original, keep))
        return metrics(model, examples)
    finally:
        model.embed.weight.copy_(original)


def spectrum_over_a(h: Float[Tensor, "p p d"]) -> Float[Tensor, "frequencies"]:
    """Power of h(a, b) per frequency k = 0..p // 2 of its transform over a, summed over b and the width."""
    return torch.fft.rfft(h.double(), dim=0).abs().pow(2).sum((1, 2)).float()


@torch.no_grad()
def pre_unembed_spectrum(model: ModularAdditionMLP) -> Float[Tensor, "frequencies"]:
    """``spectrum_over_a`` of the vector the unembedding reads, over all pairs (a, b)."""
    p = model.cfg.p
    h = model.pre_unembed(all_pairs(p).to(model.embed.weight.device)).view(p, p, -1)  # [a, b, d]
    return spectrum_over_a(h.cpu())


def fold(f: int, p: int) -> int:
    """The frequency in 0..p // 2 that f (mod p) stands for."""
    f %= p
    return min(f, p - f)


def classify(spectrum: Float[Tensor, "frequencies"], keys: list[int], p: int) -> dict[str, Any]:
    """Per key frequency k: power at k and at 2k mod p, and "clock" or "pizza"; the majority overall."""
    per_key = {}
    for k in keys:
        at_k, at_2k = float(spectrum[k]), float(spectrum[fold(2 * k, p)])
        per_key[k] = {"power_k": at_k, "power_2k": at_2k, "algorithm": "clock" if at_k >= at_2k else "pizza"}
    votes = [v["algorithm"] for v in per_key.values()]
    overall = max(("clock", "pizza"), key=votes.count) if votes else "none"
    return {"algorithm": overall, "per_key": per_key}


class FourierReport(NamedTuple):
    norms: Float[Tensor, "frequencies"]  # ||E||_k, k = 0..p // 2
    keys: list[int]  # key frequencies
    ablated: dict[str, dict[str, float]]  # "train"/"test" -> loss and accuracy with only the keys kept
    algorithm: dict[str, Any]  # classify()'s verdict

    def to_json(self) -> dict[str, Any]:
        return {"frequency_norms": [float(x) for x in self.norms], "key_frequencies": self.keys,
                "ablated_to_key_frequencies": self.ablated, **self.algorithm}


def fourier_report(model: ModularAdditionMLP, train: PairData, test: PairData, threshold: float = 3.0) -> FourierReport:
    """Key frequencies of the embedding, the ablation to them, and clock versus pizza."""
    norms = frequency_norms(model.embed.weight.detach().cpu())
    keys = key_frequencies(norms, threshold)
    ablated = {"train": ablated_metrics(model, keys, train), "test": ablated_metrics(model, keys, test)}
    algorithm = classify(pre_unembed_spectrum(model).cpu(), keys, model.cfg.p)
    return FourierReport(norms, keys, ablated, algorithm)
