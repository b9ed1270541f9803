"""Turn the analysis tensors into plain JSON-able feature documents, a block of features at a time.

One document per feature (ints, floats, strings and lists only)::

    {"index", "n_fired", "n_contexts", "density", "max_activation", "mean_activation",
     "decoder_norm",
     "top_contexts": [example],                      best first
     "quantiles": [{"band", "low", "high", "n_contexts", "examples": [example]}],
     "histogram": {"edges": [float], "counts": [int]},
     "logits": {"positive": [{"token", "token_id", "value"}], "negative": [...]},
     "neighbors": [{"index", "cosine"}]}

    example = {"context_id", "peak", "max", "start", "tokens": [str], "token_ids": [int], "acts": [float]}

``tokens`` are the text each of the window's tokens adds (``lm_saes.data.pieces``: WordPiece
continuations join their word, a character split over byte-level tokens is shown whole on the
token completing it, the others showing "", and bytes completing no character as ``<0xNN>``),
so the window reads as the text when joined and the UI shows it without a tokenizer;
``token_ids`` are the tokens' ids. A logit effect's ``token`` is the id decoded on its own
(``TokenPieces.shown``). ``start`` is the context position of ``tokens[0]`` (the peak is
``tokens[peak - start]``); ``acts`` are the feature's activations on those tokens. ``n_contexts``
counts contexts where the feature fires (overall, or within a band). A feature that never fires
has empty top contexts, quantiles and histogram.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from lm_saes.analysis.decoder import LogitEffects, TopValues
from lm_saes.analysis.histogram import feature_histogram
from lm_saes.data.pieces import TokenPieces

FEATURES_PER_BLOCK = 512  # documents converted to Python objects together


class AnalysisTensors(NamedTuple):
    """Everything a document is made of, one row per feature, on the CPU."""

    n_fired: Tensor  # [d_sae] int64
    n_contexts: Tensor  # [d_sae] int64
    n_tokens: int  # analyzed tokens
    max_activation: Tensor  # [d_sae]
    mean_activation: Tensor  # [d_sae]
    decoder_norm: Tensor  # [d_sae]
    top: dict[str, Tensor]  # example payloads [d_sae, top_k, ...] (see windows.py)
    bands: dict[str, Tensor] | None  # example payloads [d_sae, n_bands, per_band, ...]
    band_contexts: Tensor | None  # [d_sae, n_bands]
    histogram_counts: Tensor  # [d_sae, bins]
    histogram_upper: Tensor  # [d_sae]: R, the histogram's range [0, R)
    logits: LogitEffects | None
    neighbors: TopValues | None
    window: int


class TokenStrings:
    """Token ids as text: ``of`` a window's pieces in context, ``__call__`` one id on its own."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.pieces = TokenPieces(tokenizer)
        self.cache: dict[int, str] = {}

    def __call__(self, token_id: int) -> str:
        if token_id not in self.cache:
            self.cache[token_id] = self.pieces.shown(token_id)
        return self.cache[token_id]

    def of(self, ids: Tensor) -> list:
        """Nested lists of the pieces of ``ids`` [..., window] (None where an id is -1): each id's
        piece looked up once; windows holding a partial character decoded as one stream."""
        unique, inverse = torch.unique(ids, return_inverse=True)
        known = unique.tolist()
        table = np.array([self.pieces.text(i) if i >= 0 else None for i in known] + [None], dtype=object)
        strings = table[inverse.numpy()]  # [..., window]
        partial = torch.tensor([i >= 0 and not self.pieces.whole(i) for i in known])[inverse]  # [..., window]
        for row in partial.any(-1).nonzero().tolist():  # the few windows a character is split in
            window = ids[tuple(row)]
            valid = (window >= 0).nonzero().flatten().tolist()
            for position, text in zip(valid, self.pieces.row(window[valid].tolist())):
                strings[(*row, position)] = text
        return strings.tolist()


def feature_documents(t: AnalysisTensors, strings: TokenStrings) -> Iterator[dict]:
    d_sae = len(t.n_fired)
    for start in range(0, d_sae, FEATURES_PER_BLOCK):
        block = slice(start, min(d_sae, start + FEATURES_PER_BLOCK))
        rows = _block_lists(t, block, strings)
        for offset, index in enumerate(range(block.start, block.stop)):
            yield _document(index, {k: v[offset] for k, v in rows.items()}, t, strings)


def _block_lists(t: AnalysisTensors, block: slice, strings: TokenStrings) -> dict[str, list]:
    """The block's rows of every tensor as nested Python lists (token ids as their strings)."""
    rows = {
        "n_fired": t.n_fired[block], "n_contexts": t.n_contexts[block],
        "max": t.max_activation[block], "mean": t.mean_activation[block], "norm": t.decoder_norm[block],
        "hist_counts": t.histogram_counts[block], "hist_upper": t.histogram_upper[block],
    }
    rows.update({f"top_{k}": v[block] for k, v in t.top.items()})
    if t.bands is not None and t.band_contexts is not None:
        rows.update({f"band_{k}": v[block] for k, v in t.bands.items()})
        rows["band_contexts"] = t.band_contexts[block]
    if t.logits is not None:
        rows.update(pos_v=t.logits.positive.values[block], pos_i=t.logits.positive.indices[block],
                    neg_v=t.logits.negative.values[block], neg_i=t.logits.negative.indices[block])
    if t.neighbors is not None:
        rows.update(nb_v=t.neighbors.values[block], nb_i=t.neighbors.indices[block])
    for prefix in ("top_", "band_"):
        if prefix + "tokens" in rows:  # context position of each window's first shown token
            first = (rows[prefix + "tokens"] >= 0).int().argmax(-1)
            rows[prefix + "start"] = rows[prefix + "peak"] - t.window + first
            rows[prefix + "ids"] = rows[prefix + "tokens"]
    return {k: strings.of(v) if k.endswith("_tokens") else v.tolist() for k, v in rows.items()}


def _document(index: int, r: dict, t: AnalysisTensors, strings: TokenStrings) -> dict:
    max_activation, n_fired = r["max"], r["n_fired"]
    doc = {
        "index": index,
        "n_fired": n_fired,
        "n_contexts": r["n_contexts"],
        "density": n_fired / t.n_tokens if t.n_tokens else 0.0,
        "max_activation": max_activation,
        "mean_activation": r["mean"],
        "decoder_norm": r["norm"],
        "top_contexts": _examples(r, "top_"),
        "quantiles": [],
        "histogram": feature_histogram(r["hist_counts"], r["hist_upper"]),
        "logits": {"positive": [], "negative": []},
        "neighbors": [],
    }
    if "band_contexts" in r and n_fired:
        n_bands = len(r["band_contexts"])
        for b in range(n_bands):
            band = {k: v[b] for k, v in r.items() if k.startswith("band_") and k != "band_contexts"}
            doc["quantiles"].append({
                "band": b, "low": b * max_activation / n_bands, "high": (b + 1) * max_activation / n_bands,
                "n_contexts": r["band_contexts"][b], "examples": _examples(band, "band_"),
            })
    if "pos_v" in r:
        doc["logits"] = {
            "positive": [{"token": strings(i), "token_id": i, "value": v} for i, v in zip(r["pos_i"], r["pos_v"])],
            "negative": [{"token": strings(i), "token_id": i, "value": v} for i, v in zip(r["neg_i"], r["neg_v"])],
        }
    if "nb_v" in r:
        doc["neighbors"] = [{"index": i, "cosine": v} for i, v in zip(r["nb_i"], r["nb_v"])]
    return doc


def _examples(r: dict, prefix: str) -> list[dict]:
    """Held examples (context_id >= 0) of one feature or band, in stored (best-first) order."""
    examples = []
    for slot, context_id in enumerate(r[prefix + "context_id"]):
        if context_id < 0:
            break  # empty slots come last
        tokens, ids, acts = r[prefix + "tokens"][slot], r[prefix + "ids"][slot], r[prefix + "acts"][slot]
        examples.append({
            "context_id": context_id,
            "peak": r[prefix + "peak"][slot],
            "max": r[prefix + "max"][slot],
            "start": r[prefix + "start"][slot],
            "tokens": [token for token in tokens if token is not None],
            "token_ids": [i for token, i in zip(tokens, ids) if token is not None],
            "acts": [a for token, a in zip(tokens, acts) if token is not None],
        })
    return examples


def to_cpu(payload: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: v.cpu() for k, v in payload.items()}


def band_view(payload: dict[str, Tensor], d_sae: int, n_bands: int) -> dict[str, Tensor]:
    """Band payloads [d_sae * n_bands, per_band, ...] as [d_sae, n_bands, per_band, ...]."""
    return {k: v.view(d_sae, n_bands, *v.shape[1:]) for k, v in payload.items()}

