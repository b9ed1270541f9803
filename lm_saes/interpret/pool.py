"""Held-out contexts beyond a feature's own: windows of the analysis's 2d cache, with every
feature's true activations on them.

The first ``negative_contexts`` contexts of the cache are cut into windows as wide as the
analysis's (2 * window + 1 tokens, or the whole context when that is shorter, as the analysis's
own windows are then; side by side from each context's first token) and encoded
with the dictionary (no model runs: the cache holds the activations), zero where the analysis
counts no token (BOS, unless it was included). The pool keeps each window's text (the model's
tokenizer, one token at a time, as the analysis decodes its own windows) and, sparsely, every
non-zero activation of every feature in it. For each feature, seeded by its index so that a draw
does not depend on which other features a run interprets:

- ``random``: windows drawn uniformly, with the feature's true activations on them (OpenAI's
  "top and random" scoring: a dense or polysemantic feature fires there too, and the simulation
  must predict it);
- ``silent``: windows where the feature never fires (Delphi's non-activating contexts, for
  detection).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from lm_saes.activations.reader import open_cache
from lm_saes.analysis.contexts import context_batches
from lm_saes.analysis.documents import TokenStrings
from lm_saes.config import ModelConfig
from lm_saes.dictionaries import Dictionary
from lm_saes.errors import CacheError
from lm_saes.interpret.contexts import FeatureContexts, Window
from lm_saes.models.backend import load_tokenizer, resolve_device


class ContextPool(NamedTuple):
    """Windows of text and every feature's non-zero activations on them."""

    tokens: list[list[str]]  # [windows][width]
    origins: list[tuple[int, int]]  # each window's (context id, first position)
    features: np.ndarray  # [entries] the feature of each non-zero activation, ascending
    windows: np.ndarray  # [entries] its window
    positions: np.ndarray  # [entries] its position in the window
    values: np.ndarray  # [entries] the activation

    def _entries(self, index: int) -> slice:
        lo, hi = np.searchsorted(self.features, [index, index + 1])
        return slice(int(lo), int(hi))

    def window(self, index: int, w: int) -> Window:
        """Window ``w`` with feature ``index``'s activations on it."""
        acts = [0.0] * len(self.tokens[w])
        entries = self._entries(index)
        mine = self.windows[entries] == w
        for p, v in zip(self.positions[entries][mine].tolist(), self.values[entries][mine].tolist()):
            acts[p] = v
        return Window(self.tokens[w], acts)

    def choose_silent(self, index: int, n: int, seed: int) -> list[int]:
        """``n`` windows (ascending) where feature ``index`` never fires; fewer if the pool lacks them."""
        silent = np.ones(len(self.tokens), dtype=bool)
        silent[self.windows[self._entries(index)]] = False
        candidates = np.flatnonzero(silent)
        rng = np.random.default_rng([seed, index, 0])
        return sorted(rng.choice(candidates, size=min(n, len(candidates)), replace=False).tolist())

    def choose_random(self, index: int, n: int, seed: int) -> list[int]:
        """``n`` windows (ascending) drawn uniformly for feature ``index``, whether it fires there or not."""
        rng = np.random.default_rng([seed, index, 1])
        return sorted(rng.choice(len(self.tokens), size=min(n, len(self.tokens)), replace=False).tolist())

    def attach(self, contexts: FeatureContexts, n_silent: int, n_random: int, seed: int) -> FeatureContexts:
        """``contexts`` with its silent (detection) and random (simulation) held-out windows."""
        index = contexts.index
        return contexts._replace(
            negatives=[self.window(index, w) for w in self.choose_silent(index, n_silent, seed)],
            random=[self.window(index, w) for w in self.choose_random(index, n_random, seed)],
        )


def build_pool(
    cache_dir: Path, dictionary_dir: Path, hook: str | None, window: int, n_contexts: int, include_bos: bool,
    batch_size: int, device: str,
) -> ContextPool:
    """Cut, encode and decode the windows (see the module docstring)."""
    cache = open_cache(cache_dir)
    if cache.layout != "2d":
        raise CacheError(f"{cache_dir} is a {cache.layout} cache; the held-out contexts need the 2d one the analysis "
                         "read (set cache=...)")
    if hook is not None and cache.manifest.hook != hook:
        raise CacheError(f"{cache_dir} caches {cache.manifest.hook}, but the analysis read {hook}; set cache= to "
                         "a 2d cache of the analyzed hook")
    model = cache.manifest.config.get("model")
    if not model:
        raise CacheError(f"{cache_dir}/manifest.json does not record its model, whose tokenizer decodes the windows")
    tokenizer = load_tokenizer(ModelConfig.model_validate({**model, "device": "cpu"}))
    strings = TokenStrings(tokenizer)
    torch_device = resolve_device(device)
    dictionary = Dictionary.from_pretrained(dictionary_dir, device=torch_device)
    if dictionary.d_in != cache.d_model:
        raise CacheError(f"{cache_dir} holds d_model={cache.d_model} activations; the dictionary expects "
                         f"d_in={dictionary.d_in}")
    width = 2 * window + 1  # cut to the contexts' length below, as the analysis's windows are
    tokens: list[list[str]] = []
    origins: list[tuple[int, int]] = []
    parts: list[tuple[np.ndarray, ...]] = []
    batches = context_batches(cache, batch_size, torch_device, tokenizer.bos_token_id, include_bos, n_contexts)
    with torch.inference_mode():
        for batch in batches:
            n, ctx, d = batch.activations.shape
            width = min(width, ctx)
            acts = dictionary.encode(batch.activations.view(n * ctx, d)).view(n, ctx, -1)  # [n, ctx, d_sae]
            acts = acts * batch.analyzed[..., None]  # the analysis's zeros: positions it does not count
            valid = batch.valid.sum(1).tolist()  # right-padded: the first `valid` positions are text
            cuts = [(row, start) for row in range(n) for start in range(0, valid[row] - width + 1, width)]
            if not cuts:
                continue
            rows = torch.tensor([r for r, _ in cuts], device=acts.device)  # [cuts]
            starts = torch.tensor([s for _, s in cuts], device=acts.device)  # [cuts]
            spans = starts[:, None] + torch.arange(width, device=acts.device)  # [cuts, width]
            cut = acts[rows[:, None], spans]  # [cuts, width, d_sae]
            w, p, f = cut.nonzero(as_tuple=True)  # every non-zero activation: window, position, feature
            parts.append(tuple(t.cpu().numpy() for t in (w + len(tokens), p, f, cut[w, p, f])))
            tokens += strings.of(batch.tokens[rows[:, None], spans].cpu())
            origins += [(int(batch.context_ids[r]), s) for r, s in cuts]
    if not tokens:
        raise CacheError(f"the first {n_contexts} contexts of {cache_dir} hold no window of {width} tokens")
    w, p, f, v = (np.concatenate([part[i] for part in parts]) for i in range(4))
    order = np.argsort(f, kind="stable")
    return ContextPool(tokens, origins, f[order], w[order], p[order], v[order].astype(np.float64))
