"""Training batches straight from the model: the same (input, target) pairs a 1d cache would
hold, produced while training.

Contexts are built once (token ids only: 4 bytes a token), visited in a seeded order per epoch
and split across data-parallel ranks; each forward stops after the last hook needed; BOS and
padding positions are dropped as in a 1d cache; ``shuffle_tokens`` rows are mixed before they
are cut into batches. The stream is a pure function of (config, seed, rank), so a resumed run
that skips the consumed batches sees exactly what the first run saw.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import torch

from lm_saes.activations.plan import kept_tokens
from lm_saes.config import OnTheFlyConfig
from lm_saes.data.framing import special_ids
from lm_saes.data.tokens import build_contexts, load_texts
from lm_saes.models.backend import LanguageModel, load_language_model
from lm_saes.training.data import Pair


def load_source(src: OnTheFlyConfig) -> tuple[LanguageModel, dict[str, int]]:
    """The model, checked to have the hooks; and each hook's width."""
    lm = load_language_model(src.model)
    hooks = [src.hook] + ([src.target_hook] if src.target_hook else [])
    lm.check_hooks(hooks)
    return lm, lm.hook_widths(hooks)


def model_pairs(
    lm: LanguageModel, src: OnTheFlyConfig, batch_size: int, seed: int, device: torch.device,
    rank: int = 0, world_size: int = 1,
) -> Iterator[Pair]:
    """Endless float32 (input, target) batches of ``batch_size`` rows; target = input for an SAE."""
    contexts = build_contexts(load_texts(src.data), lm.tokenizer, src.data, lm.pad_token_id)
    keep = kept_tokens(contexts.tokens, contexts.mask, special_ids(lm.tokenizer))  # [n, ctx]
    hooks = [src.hook] + ([src.target_hook] if src.target_hook else [])
    for epoch in itertools.count():
        order = torch.randperm(len(contexts.tokens), generator=torch.Generator().manual_seed(seed * 7919 + epoch))
        mine = order[rank::world_size]
        mixer = torch.Generator().manual_seed(seed * 7919 + epoch + 104729 * (rank + 1))
        pending: list[tuple[torch.Tensor, torch.Tensor]] = []  # (inputs, targets) rows not yet batched
        n_pending = 0
        for ids in mine.split(src.batch_contexts):
            acts = lm.run_to_hooks(contexts.tokens[ids].long(), hooks, out_dtype=torch.float32)
            rows = keep[ids].to(lm.device)  # [b, ctx]
            x = acts[src.hook][rows]  # [m, d_in]
            y = acts[src.target_hook][rows] if src.target_hook else x
            pending.append((x, y))
            n_pending += len(x)
            if n_pending >= max(src.shuffle_tokens, batch_size):
                pending, n_pending = yield from _batches(pending, batch_size, mixer, device)
        yield from _batches(pending, batch_size, mixer, device)  # the epoch's remainder; tail dropped


def _batches(pending, batch_size: int, mixer: torch.Generator, device: torch.device):
    """Shuffle the pending rows, yield whole batches; return the leftover rows (fewer than a batch)."""
    x = torch.cat([p[0] for p in pending])
    y = torch.cat([p[1] for p in pending])
    order = torch.randperm(len(x), generator=mixer).to(x.device)
    x, y = x[order], y[order]
    n_full = len(x) // batch_size * batch_size
    for start in range(0, n_full, batch_size):
        yield (x[start:start + batch_size].to(device), y[start:start + batch_size].to(device))
    rest = (x[n_full:], y[n_full:])
    return [rest], len(rest[0])
