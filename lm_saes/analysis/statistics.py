"""Pass 1 over the cache: firing counts, activation sums and maxima, histograms, top contexts.

Conventions (every variant's activations are >= 0, so "fires" means activation > 0, which is
``FeatureFiring``'s acts != 0):

- ``n_fired``: analyzed tokens on which the feature fires; ``density`` = n_fired / analyzed tokens.
- ``mean_activation``: the mean over the tokens where it fires (sum / n_fired; 0 if it never does).
- a context's activation for a feature is its maximum over the context's analyzed tokens, at the
  first position that reaches it (the "peak").
- top contexts: the ``top_k`` contexts with the largest such maxima, one entry per context;
  among equal maxima the context read first (earlier in the cache) ranks higher.

Memory: O(d_sae * (histogram_bins + top_k * window)), plus one batch's activations.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from jaxtyping import Float, Int
from torch import Tensor

from lm_saes.analysis.best import GroupedBest
from lm_saes.analysis.codes import FiringTokens
from lm_saes.analysis.contexts import ContextBatch
from lm_saes.analysis.histogram import DyadicHistogram
from lm_saes.analysis.windows import example_payload, examples_at
from lm_saes.evaluation.metrics import FeatureFiring


class ContextMaxima(NamedTuple):
    values: Float[Tensor, "batch d_sae"]  # each context's maximum activation of each feature (0: none)
    peaks: Int[Tensor, "batch d_sae"]  # first position reaching it


def context_maxima(f: FiringTokens, n_rows: int, ctx: int, d_sae: int) -> ContextMaxima:
    """Per (context, feature): the max activation and the first position reaching it."""
    cell = f.rows * d_sae + f.features  # [n] index into [batch * d_sae]
    values = torch.zeros(n_rows * d_sae, dtype=f.values.dtype, device=f.values.device)
    values.scatter_reduce_(0, cell, f.values, "amax")
    at_max = f.values == values[cell]
    peaks = torch.full((n_rows * d_sae,), ctx, dtype=torch.int64, device=cell.device)
    peaks.scatter_reduce_(0, cell[at_max], f.positions[at_max], "amin")
    return ContextMaxima(values.view(n_rows, d_sae), peaks.view(n_rows, d_sae))


class FeatureStatistics:
    """Accumulates pass 1; ``update`` with each batch's codes (``codes.py``)."""

    def __init__(self, d_sae: int, top_k: int, window: int, histogram_bins: int, device: torch.device) -> None:
        self.d_sae, self.window = d_sae, window
        self.firing = FeatureFiring(d_sae, device=device)  # n_fired and analyzed tokens
        self.act_sum = torch.zeros(d_sae, dtype=torch.float64, device=device)
        self.max_activation = torch.zeros(d_sae, dtype=torch.float32, device=device)
        self.contexts_fired = torch.zeros(d_sae, dtype=torch.int64, device=device)
        self.histogram = DyadicHistogram(d_sae, histogram_bins, device=device)
        self.top = GroupedBest(d_sae, top_k, example_payload(window), device=device)
        self.n_contexts = 0

    @torch.no_grad()
    def update(self, batch: ContextBatch, fired: FiringTokens) -> None:
        n, ctx = batch.tokens.shape
        self.firing.counts += torch.bincount(fired.features, minlength=self.d_sae)
        self.firing.n_tokens += int(batch.analyzed.sum())
        self.n_contexts += n
        self.act_sum.index_add_(0, fired.features, fired.values.double())

        maxima = context_maxima(fired, n, ctx, self.d_sae)
        batch_max = maxima.values.max(0).values  # [d_sae]
        self.max_activation = torch.maximum(self.max_activation, batch_max)
        self.contexts_fired += (maxima.values > 0).sum(0)
        self.histogram.update(fired.features, fired.values, batch_max)
        self._offer_top(batch, fired, maxima)

    def _offer_top(self, batch: ContextBatch, fired: FiringTokens, maxima: ContextMaxima) -> None:
        if self.top.k == 0:
            return
        # Only (context, feature) pairs that beat the feature's current k-th context.
        beats = (maxima.values > 0) & (maxima.values > -self.top.worst()[None, :])  # [batch, d_sae]
        rows, features = beats.nonzero(as_tuple=True)
        values = maxima.values[rows, features]
        peaks = maxima.peaks[rows, features]
        self.top.offer(
            features, -values.double(), batch.first + rows,
            lambda i: examples_at(batch, fired, rows[i], features[i], peaks[i], values[i], self.window, self.d_sae),
        )

    def mean_activation(self) -> Float[Tensor, "d_sae"]:
        """Mean activation over the tokens where the feature fires (0 if it never does)."""
        return torch.where(self.firing.counts > 0, self.act_sum / self.firing.counts.clamp(min=1), 0.0)
