"""DyadicHistogram: merging bins as the range doubles equals binning once with the final range."""

from __future__ import annotations

import math

import torch

from lm_saes.analysis.histogram import DyadicHistogram, feature_histogram

D_SAE, BINS = 5, 12


def direct(values: list[float], bins: int) -> list[int]:
    upper = 2.0 ** math.frexp(max(values))[1]
    counts = [0] * bins
    for v in values:
        counts[int(v / upper * bins)] += 1
    return counts


def test_rebinning_as_maxima_grow_equals_direct_binning():
    g = torch.Generator().manual_seed(0)
    hist = DyadicHistogram(D_SAE, BINS)
    seen: list[list[float]] = [[] for _ in range(D_SAE)]
    for step in range(30):
        n = 50
        features = torch.randint(0, D_SAE - 1, (n,), generator=g)  # the last feature never fires
        scale = 1.5 ** step * (1 + features.float())  # maxima grow by many powers of two
        values = (torch.rand(n, generator=g) * scale).clamp(min=1e-6)
        if step == 7:  # exact powers of two and exact bin edges
            values[:4] = torch.tensor([1.0, 2.0, 0.75, 3.0 / BINS])
        batch_max = torch.zeros(D_SAE).scatter_reduce(0, features, values, "amax")
        hist.update(features, values, batch_max)
        for f, v in zip(features.tolist(), values.tolist()):
            seen[f].append(v)
    for f in range(D_SAE - 1):
        assert hist.counts[f].tolist() == direct(seen[f], BINS)
        out = feature_histogram(hist.counts[f].tolist(), float(hist.upper()[f]))
        assert sum(out["counts"]) == len(seen[f]) and len(out["edges"]) == len(out["counts"]) + 1
        assert out["edges"][-2] <= max(seen[f]) < out["edges"][-1]
        assert BINS // 2 + 1 <= len(out["counts"]) <= BINS
    assert hist.counts[-1].sum() == 0 and float(hist.upper()[-1]) == 0
    assert feature_histogram(hist.counts[-1].tolist(), 0.0) == {"edges": [], "counts": []}
