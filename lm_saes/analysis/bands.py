"""Pass 2 over the cache: contexts sampled uniformly within bands of each feature's activation range.

Bands: feature i's range (0, M_i], M_i its max activation from pass 1, cut into ``n_bands``
equal-width bands; band b = (b M_i / n, (b + 1) M_i / n]. A context belongs to the band holding
its activation for the feature (its maximum over the context, as for top contexts), so the top
band always holds the top context, and contexts where the feature never fires are in no band.

Sampling: every (context, feature) pair gets a random priority, a hash of (seed, context id,
feature): reproducible and independent of the batch order. Each band keeps the ``per_band``
contexts of lowest priority (bottom-k, "priority reservoir" sampling): a uniformly random subset
of the band's contexts, of size min(per_band, contexts in the band).

Why a second pass: a band's edges depend on the final maximum, and any context seen before the
maximum is known may end up in any band, so one pass would have to keep every context. The
second pass repeats only the encoder and a per-context filter (no histograms, no token-level
statistics); see benchmarks/analyze.py for its cost. Memory: O(d_sae * n_bands * per_band * window).
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor

from lm_saes.analysis.best import GroupedBest
from lm_saes.analysis.codes import FiringTokens
from lm_saes.analysis.contexts import ContextBatch
from lm_saes.analysis.statistics import context_maxima
from lm_saes.analysis.windows import example_payload, examples_at

_M32 = 0xFFFFFFFF


def _mix32(x: Int[Tensor, "..."]) -> Int[Tensor, "..."]:
    """A 32-bit integer hash (values in [0, 2^32), int64 arithmetic without overflow)."""
    x = (((x >> 16) ^ x) * 0x45D9F3B) & _M32
    x = (((x >> 16) ^ x) * 0x45D9F3B) & _M32
    return (x >> 16) ^ x


def priorities(seed: int, context_ids: Int[Tensor, "m"], features: Int[Tensor, "m"]) -> Int[Tensor, "m"]:
    """The random priority in [0, 2^32) of each (context id, feature) pair, fixed by ``seed``."""
    h = _mix32((context_ids & _M32) ^ int(_mix32(torch.tensor(seed & _M32))))
    h = _mix32(h ^ ((context_ids >> 32) & _M32))
    return _mix32(h ^ _mix32(features ^ 0x5BD1E995))


def band_index(
    values: Float[Tensor, "m"], max_activation: Float[Tensor, "m"], n_bands: int
) -> Int[Tensor, "m"]:
    """b such that value is in (b M / n, (b + 1) M / n], i.e. ceil(value / M * n) - 1 (float64)."""
    scaled = values.double() / max_activation.double() * n_bands
    return (scaled.ceil().long() - 1).clamp(0, n_bands - 1)


class BandSamples:
    """Accumulates pass 2 for every feature at once; group f * n_bands + b is feature f's band b."""

    def __init__(
        self, max_activation: Float[Tensor, "d_sae"], n_bands: int, per_band: int, window: int,
        seed: int, device: torch.device,
    ) -> None:
        self.max_activation = max_activation.to(device)
        self.n_bands, self.window, self.seed = n_bands, window, seed
        d_sae = len(max_activation)
        self.samples = GroupedBest(d_sae * n_bands, per_band, example_payload(window), device=device)
        self.band_contexts = torch.zeros(d_sae * n_bands, dtype=torch.int64, device=device)

    @torch.no_grad()
    def update(self, batch: ContextBatch, fired: FiringTokens) -> None:
        n, ctx = batch.tokens.shape
        d_sae = len(self.max_activation)
        maxima = context_maxima(fired, n, ctx, d_sae)
        rows, features = (maxima.values > 0).nonzero(as_tuple=True)
        values = maxima.values[rows, features]
        groups = features * self.n_bands + band_index(values, self.max_activation[features], self.n_bands)
        self.band_contexts.index_add_(0, groups, torch.ones_like(groups))
        keys = priorities(self.seed, batch.context_ids[rows], features)
        peaks = maxima.peaks[rows, features]
        self.samples.offer(
            groups, keys.double(), batch.first + rows,
            lambda i: examples_at(batch, fired, rows[i], features[i], peaks[i], values[i], self.window, d_sae),
        )
