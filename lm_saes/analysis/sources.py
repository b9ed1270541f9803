"""Where the analysis's contexts come from: a 2d activation cache, or the model run on the fly.

Both sources yield the same ``ContextBatch``es (``contexts.py``) in a fixed order, so the two
passes of ``analyze.py`` see identical contexts whichever is used:

- ``CacheSource``: the cache's rows, shard by shard (``context_batches``).
- ``ModelSource``: the dataset's contexts, built once (token ids only), in dataset order; each
  batch is one forward that stops after the hook. A context's id is its row in the dataset, as in
  a 2d cache generated from the same data (generate never shuffles 2d contexts).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import Protocol

import torch

from lm_saes.activations.reader import ActivationCache
from lm_saes.analysis.contexts import ContextBatch, analyzed_positions, context_batches, n_stream_contexts
from lm_saes.config import AnalyzeSourceConfig
from lm_saes.data.tokens import build_contexts, load_texts
from lm_saes.errors import CacheError
from lm_saes.models.backend import LanguageModel


class ContextSource(Protocol):
    d_model: int  # width of the activations
    where: str  # names the source in error messages

    def batches(self, batch_size: int, device: torch.device, specials: Collection[int], include_bos: bool = False,
                max_contexts: int | None = None) -> Iterator[ContextBatch]: ...

    def n_contexts(self, max_contexts: int | None) -> int: ...

    def describe(self) -> dict: ...


class CacheSource:
    """The contexts of a 2d activation cache, in the cache's order."""

    def __init__(self, cache: ActivationCache) -> None:
        if cache.layout != "2d":
            raise CacheError(f"{cache.hook_dir} is a {cache.layout} cache; analysis needs whole contexts: "
                             "generate the cache again with layout = \"2d\"")
        self.cache = cache
        self.d_model = cache.d_model
        self.where = str(cache.hook_dir)

    def batches(self, batch_size: int, device: torch.device, specials: Collection[int], include_bos: bool = False,
                max_contexts: int | None = None) -> Iterator[ContextBatch]:
        return context_batches(self.cache, batch_size, device, specials, include_bos, max_contexts)

    def n_contexts(self, max_contexts: int | None) -> int:
        return n_stream_contexts(self.cache, max_contexts)

    def describe(self) -> dict:
        m = self.cache.manifest
        return {
            "model": m.model, "model_config": m.config.get("model", {}), "hook": m.hook, "d_model": m.d_model,
            "context_size": m.context_size, "layout": m.layout, "n_tokens": m.n_tokens,
            "path": str(self.cache.hook_dir.resolve()), "label": str(self.cache.hook_dir.resolve()),
        }


class ModelSource:
    """The contexts of ``src.data``, in dataset order, with activations from running the model."""

    def __init__(self, lm: LanguageModel, src: AnalyzeSourceConfig) -> None:
        lm.check_hooks([src.hook])
        self.lm, self.src = lm, src
        self.d_model = lm.hook_widths([src.hook])[src.hook]
        self.contexts = build_contexts(load_texts(src.data), lm.tokenizer, src.data, lm.pad_token_id)
        self.where = f"{src.hook} of {src.model.name} (on the fly)"

    def batches(self, batch_size: int, device: torch.device, specials: Collection[int], include_bos: bool = False,
                max_contexts: int | None = None) -> Iterator[ContextBatch]:
        """Batches of ``batch_size`` contexts (the last may be smaller), one model forward each."""
        total = self.n_contexts(max_contexts)
        for first in range(0, total, batch_size):
            rows = slice(first, min(first + batch_size, total))
            tokens = self.contexts.tokens[rows].long()  # [batch, ctx]
            acts = self.lm.run_to_hooks(tokens, [self.src.hook], out_dtype=torch.float32)[self.src.hook]
            tokens = tokens.to(device)
            valid = self.contexts.mask[rows].to(device)  # [batch, ctx]
            yield ContextBatch(
                activations=acts.to(device),  # [batch, ctx, d_model]
                tokens=tokens,
                context_ids=torch.arange(rows.start, rows.stop, device=device),
                valid=valid,
                analyzed=analyzed_positions(tokens, valid, specials, include_bos),
                first=first,
            )

    def n_contexts(self, max_contexts: int | None) -> int:
        total = len(self.contexts.tokens)
        return total if max_contexts is None else min(total, max_contexts)

    def describe(self) -> dict:
        return {
            "model": self.src.model.name, "model_config": self.src.model.model_dump(mode="json"),
            "hook": self.src.hook, "d_model": self.d_model, "context_size": self.src.data.context_size,
            "layout": "on the fly", "n_tokens": int(self.contexts.tokens.numel()), "path": None,
            "label": f"on the fly: {self.src.data.path}",
        }
