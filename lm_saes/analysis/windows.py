"""Examples: a context, the feature's peak in it, and the window of tokens around the peak.

An example is stored as fixed-size tensors so that many can be kept at once:

- ``context_id`` and ``peak`` (the peak's position in the context), ``max`` (the activation there);
- ``tokens`` [2 * window + 1]: token ids at positions peak - window ... peak + window, -1 where a
  position falls outside the context or on padding (the document drops those);
- ``acts`` [2 * window + 1]: the feature's activation at each of those positions (0 where not
  analyzed, e.g. on BOS, which the statistics leave out).
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor

from lm_saes.analysis.codes import FiringTokens
from lm_saes.analysis.contexts import ContextBatch


def example_payload(window: int) -> dict[str, tuple[tuple[int, ...], torch.dtype, float]]:
    """The payload spec of ``GroupedBest`` for examples with ``window`` tokens on each side."""
    width = 2 * window + 1
    return {
        "context_id": ((), torch.int64, -1),
        "peak": ((), torch.int64, -1),
        "max": ((), torch.float32, 0.0),
        "tokens": ((width,), torch.int32, -1),
        "acts": ((width,), torch.float32, 0.0),
    }


def examples_at(
    batch: ContextBatch,
    fired: FiringTokens,  # the batch's codes
    rows: Int[Tensor, "m"],
    features: Int[Tensor, "m"],
    peaks: Int[Tensor, "m"],
    values: Float[Tensor, "m"],
    window: int,
    d_sae: int,
) -> dict[str, Tensor]:
    """Example payloads of m (context row in the batch, feature) pairs peaking at ``peaks``."""
    ctx = batch.tokens.shape[1]
    offsets = torch.arange(-window, window + 1, device=peaks.device)
    positions = peaks[:, None] + offsets  # [m, width]
    inside = (positions >= 0) & (positions < ctx)
    positions = positions.clamp(0, ctx - 1)
    rows_ = rows[:, None].expand_as(positions)  # [m, width]
    shown = inside & batch.valid[rows_, positions]
    tokens = torch.where(shown, batch.tokens[rows_, positions], -1)
    analyzed = shown & batch.analyzed[rows_, positions]
    window_acts = torch.where(analyzed, fired.windows(rows, features, peaks - window, 2 * window + 1, ctx, d_sae), 0.0)
    return {
        "context_id": batch.context_ids[rows],
        "peak": peaks,
        "max": values,
        "tokens": tokens.to(torch.int32),
        "acts": window_acts,
    }
