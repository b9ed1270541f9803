"""What an SPD run decomposes, and the batches it feeds it.

- a toy directory: the toy's model; inputs drawn fresh from its distribution (or rows of its
  train set) for every step; outputs compared as the toy says (MSE, or KL of logits);
- a language model: the Hugging Face model on the fly; contexts built from ``data`` as
  `generate` builds them, visited in a seeded order per epoch; outputs compared by KL;
- a cache pair: one module of the model the caches came from, fed the cached inputs, its output
  compared by MSE with the cached outputs (the layerwise mode).

Every stream is a pure function of (seed, step) and gives each data-parallel rank its own rows
of the global batch (``sampling.Layout``), so resuming and any layout of ranks see the same data.
"""

from __future__ import annotations

import difflib
import itertools
from collections.abc import Iterator
from typing import Any, Callable, NamedTuple

import torch
from torch import Tensor, nn

from lm_saes.errors import ConfigError, LmSaesError, ModelError
from lm_saes.spd.config import CacheTarget, LanguageModelTarget, Target, ToyTarget
from lm_saes.spd.sampling import Layout, draw_seed

BATCH_DRAW = -1  # the draw index of a step's batch (masks use 0, 1, ...)

Batches = Callable[[int, int, int, Layout, torch.device], Iterator[tuple[Tensor, Tensor | None]]]
# (first step, batch size, seed, layout, device) -> (input, target output or None) for every step from the first


class OpenTarget(NamedTuple):
    model: nn.Module  # what is decomposed, frozen, in eval mode, on its device
    example: Any  # one small input, for measuring widths
    output_loss: str  # "mse" or "kl"
    batches: Batches
    record: dict[str, Any]  # how config.json describes it
    toy: Any = None  # the LoadedToy of a toy target (its ground truth), else None


def open_target(target: Target, device: torch.device, output_loss: str = "auto") -> OpenTarget:
    """Load the target of an SPD config (a missing one is an error naming what to do)."""
    opened = {"toy": _toy, "language_model": _language_model, "cache": _cache}[target.kind](target, device)
    if output_loss != "auto":
        opened = opened._replace(output_loss=output_loss)
    return opened


def _toy(target: ToyTarget, device: torch.device) -> OpenTarget:
    from lm_saes.toys import take
    from lm_saes.toys.directory import load_toy

    if not target.path.is_dir():
        raise ConfigError(f"target.path={str(target.path)!r}: no toy directory there; train the toy first with "
                          "`lm-saes toy CONFIG` (e.g. examples/toy_tms_5-2.toml)")
    try:
        toy = load_toy(target.path, device=device)
    except LmSaesError as e:
        raise ConfigError(f"target.path: {e}") from e
    spec, config = toy.spec, toy.config
    train_set = spec.data(config).train if spec.sample is None else None

    def batches(first: int, batch_size: int, seed: int, layout: Layout, device: torch.device):
        for step in itertools.count(first):
            generator = torch.Generator().manual_seed(draw_seed(seed, step, BATCH_DRAW))
            if spec.sample is not None:
                examples = spec.sample(config, batch_size, generator)
            else:
                examples = take(train_set, torch.randint(len(train_set[0]), (batch_size,), generator=generator))
            yield layout.rows(examples[0]).to(device), None

    example = next(batches(0, 2, 0, Layout(), device))[0]
    record = {"kind": "toy", "path": str(target.path.resolve()), "toy": config.model_dump(mode="json")}
    return OpenTarget(toy.model, example, spec.output_loss, batches, record, toy)


def _language_model(target: LanguageModelTarget, device: torch.device) -> OpenTarget:
    from lm_saes.data.tokens import build_contexts, load_texts
    from lm_saes.models.backend import load_causal_lm

    model, tokenizer = load_causal_lm(target.model.model_copy(update={"device": str(device)}))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    contexts = build_contexts(load_texts(target.data), tokenizer, target.data, pad).tokens.long()

    def batches(first: int, batch_size: int, seed: int, layout: Layout, device: torch.device):
        per_epoch = len(contexts) // batch_size
        if per_epoch == 0:
            raise ConfigError(f"the data holds {len(contexts)} contexts of {target.data.context_size} tokens, fewer "
                              f"than batch_size={batch_size}; lower batch_size or give more text")
        order, epoch = None, -1
        for step in itertools.count(first):
            if step // per_epoch != epoch:
                epoch = step // per_epoch
                generator = torch.Generator().manual_seed(draw_seed(seed, epoch, BATCH_DRAW))
                order = torch.randperm(len(contexts), generator=generator)
            index = step % per_epoch
            ids = order[index * batch_size:(index + 1) * batch_size]
            yield layout.rows(contexts[ids]).to(device), None

    record = {"kind": "language_model", "model": target.model.model_dump(mode="json"),
              "data": target.data.model_dump(mode="json")}
    return OpenTarget(model, contexts[:2].to(device), "kl", batches, record)


def _cache(target: CacheTarget, device: torch.device) -> OpenTarget:
    from lm_saes.activations.manifest import read_manifest
    from lm_saes.config import ModelConfig
    from lm_saes.models.backend import load_causal_lm
    from lm_saes.training.data import cache_pairs

    manifest = read_manifest(target.cache)
    generated = manifest.config.get("model")
    if generated is None:
        raise ConfigError(f"{target.cache} holds synthetic activations: SPD decomposes a model's module, so it needs "
                          "a cache generated from a model")
    model, _ = load_causal_lm(ModelConfig.model_validate({**generated, "device": str(device)}))
    module = _submodule(model, target.module)
    first = next(cache_pairs(target.cache, target.target_cache, 2, 0, device))

    def batches(start: int, batch_size: int, seed: int, layout: Layout, device: torch.device):
        pairs = cache_pairs(target.cache, target.target_cache, batch_size // layout.data, seed, device,
                            layout.data_rank, layout.data)
        yield from itertools.islice(pairs, start, None)

    record = {"kind": "cache", "module": target.module, "cache": str(target.cache.resolve()),
              "target_cache": str(target.target_cache.resolve()), "model": generated, "hook_in": manifest.hook,
              "hook_out": read_manifest(target.target_cache).hook}
    return OpenTarget(module, first[0], "mse", batches, record)


def _submodule(model: nn.Module, name: str) -> nn.Module:
    names = [n for n, _ in model.named_modules() if n]
    if name not in names:
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise ModelError(f"target.module={name!r} is not a module of the model; {hint}its modules are: "
                         f"{', '.join(names[:40])}{' ...' if len(names) > 40 else ''}")
    return model.get_submodule(name)
