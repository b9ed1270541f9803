"""What the LLC samples: a trained model directory turned into a model, its loss and its data.

Three kinds of directory, each with the loss it was trained on:

- a toy (`lm-saes toy`): its own loss on its train set;
- a language model (a local Hugging Face directory, e.g. from `lm-saes pretrain`): mean next-token
  cross-entropy over token contexts built by ``lm_saes.data.tokens``, as `lm-saes generate` builds them;
- a dictionary (`lm-saes train`): its training loss (the variant's ``loss``, full sparsity
  penalty, no dead-feature term) on its training cache, with the training-time input and
  output scales restored (``Dictionary.unfold_scales``).

``functional_loss`` turns a model and its loss into the pure function of parameters that the
sampler vmaps over chains.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn
from torch.func import functional_call

from lm_saes.config import DataConfig
from lm_saes.errors import ConfigError, LmSaesError
from lm_saes.llc.config import LLCConfig
from lm_saes.llc.estimator import Batch, LossFn, Params
from lm_saes.toys import n_examples, take, to_device
from lm_saes.toys.directory import LoadedToy, load_toy, read_record

TOY, LANGUAGE_MODEL, DICTIONARY = "toy", "language_model", "dictionary"


class LossSource(NamedTuple):
    kind: str  # TOY, LANGUAGE_MODEL or DICTIONARY
    model: nn.Module
    loss: Callable[[nn.Module, Batch], Tensor]  # (model, batch) -> mean loss
    examples: int  # n: examples in the loss's dataset (pairs, contexts, cached tokens)
    batches: Callable[[int, int], Iterator[Batch]]  # (batch_size, seed) -> endless batches on the device


class _LossOf(nn.Module):
    """``loss(model, batch)`` as a module's forward, so functional_call can swap the model's parameters."""

    def __init__(self, model: nn.Module, loss: Callable[[nn.Module, Batch], Tensor]) -> None:
        super().__init__()
        self.model, self.loss = model, loss

    def forward(self, batch: Batch) -> Tensor:
        return self.loss(self.model, batch)


def functional_loss(model: nn.Module, loss: Callable[[nn.Module, Batch], Tensor]) -> tuple[LossFn, Params]:
    """(params, batch) -> loss with ``params`` in place of the model's parameters, and the model's own
    parameters (w*). Buffers stay the model's."""
    wrapper = _LossOf(model, loss)
    params = {name: p.detach() for name, p in model.named_parameters()}

    def loss_fn(p: Params, batch: Batch) -> Tensor:
        return functional_call(wrapper, {f"model.{k}": v for k, v in p.items()}, (batch,))

    return loss_fn, params


def epoch_rows(n: int, batch_size: int, seed: int) -> Iterator[Tensor]:
    """Endless batches of row indices: seeded permutations of 0..n-1 cut into full batches."""
    if batch_size > n:
        raise ConfigError(f"sgld.batch_size={batch_size} exceeds the {n} examples of the loss; lower it")
    generator = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(n, generator=generator)
        yield from order[: n - n % batch_size].view(-1, batch_size)


def directory_kind(path: Path) -> str:
    """TOY, LANGUAGE_MODEL or DICTIONARY, from the directory's files; a clear error otherwise."""
    if not path.is_dir():
        raise LmSaesError(f"model directory {path} does not exist")
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        config = None
    artifact = config.get("artifact") if isinstance(config, dict) else None
    if read_record(path) is not None:
        return TOY
    if artifact in (LANGUAGE_MODEL, DICTIONARY):
        return artifact
    if artifact is None and isinstance(config, dict) and "dictionary" in config and "d_sae" in config:
        return DICTIONARY
    if artifact is None and (path / "cfg.json").is_file() and (path / "sae_weights.safetensors").is_file():
        return DICTIONARY  # a SAELens directory
    if artifact is None and isinstance(config, dict) and "model_type" in config:
        return LANGUAGE_MODEL
    found = f"a {artifact!r} artifact" if artifact else "no config.json lm-saes knows"
    raise LmSaesError(
        f"{path} holds {found}; `lm-saes llc` estimates a toy directory (`lm-saes toy`), a language-model "
        "directory (a Hugging Face model, e.g. from `lm-saes pretrain`) or a dictionary directory (`lm-saes train`)"
    )


def open_source(cfg: LLCConfig, device: torch.device) -> LossSource:
    """The model of ``cfg.model``, its loss and its data."""
    kind = directory_kind(cfg.model)
    if kind == TOY:
        return toy_source(load_toy(cfg.model, device=device), device)
    if kind == LANGUAGE_MODEL:
        return language_model_source(cfg, device)
    return dictionary_source(cfg, device)


def toy_source(toy: LoadedToy, device: torch.device) -> LossSource:
    """A loaded toy (``lm_saes.toys.directory.load_toy``) on its train set."""
    train = to_device(toy.spec.data(toy.config).train, device)

    def batches(batch_size: int, seed: int) -> Iterator[Batch]:
        return (take(train, rows.to(device)) for rows in epoch_rows(n_examples(train), batch_size, seed))

    return LossSource(TOY, toy.model, toy.spec.loss, n_examples(train), batches)


def language_model_source(cfg: LLCConfig, device: torch.device) -> LossSource:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lm_saes.data.tokens import build_contexts, load_texts
    from lm_saes.models.tiny_lm import next_token_loss

    data = cfg.data or default_text(cfg.model)
    tokenizer = AutoTokenizer.from_pretrained(cfg.model)
    contexts = build_contexts(load_texts(data), tokenizer, data, tokenizer.pad_token_id)
    tokens = contexts.tokens[contexts.mask.all(1)].long()  # whole contexts only: no padding in the loss
    if len(tokens) == 0:
        raise ConfigError(f"data.path={data.path!r} gives no context of {data.context_size} tokens without padding")
    # Eager attention: every op of it has a vmap rule (CPU's fused attention has none).
    model = AutoModelForCausalLM.from_pretrained(cfg.model, attn_implementation="eager").to(device).eval()

    def loss(m: nn.Module, batch: Tensor) -> Tensor:
        return next_token_loss(m(batch).logits, batch)

    def batches(batch_size: int, seed: int) -> Iterator[Batch]:
        return (tokens[rows].to(device) for rows in epoch_rows(len(tokens), batch_size, seed))

    return LossSource(LANGUAGE_MODEL, model, loss, len(tokens), batches)


def default_text(model_dir: Path) -> DataConfig:
    """The text `lm-saes pretrain` trained on, at its context size."""
    corpus = model_dir / "corpus" / "train.jsonl"
    if not corpus.is_file():
        raise ConfigError(f"{model_dir} has no corpus/train.jsonl (written by `lm-saes pretrain`); set `data` "
                          "to the text the loss is measured on")
    try:
        context_size = json.loads((model_dir / "pretrain_config.json").read_text())["context_size"]
    except (OSError, json.JSONDecodeError, KeyError):
        context_size = DataConfig.model_fields["context_size"].default
    return DataConfig(path=str(corpus), context_size=context_size)


def dictionary_source(cfg: LLCConfig, device: torch.device) -> LossSource:
    from lm_saes.activations.reader import open_cache
    from lm_saes.dictionaries import Dictionary, TrainingContext
    from lm_saes.training.data import cache_pairs

    dictionary = Dictionary.from_pretrained(cfg.model, device)
    meta = _json_or_empty(cfg.model / "config.json")
    scales = meta.get("training_scales", {"input": 1.0, "output": 1.0})
    dictionary.unfold_scales(scales["input"], scales["output"])
    dictionary.train()  # the training loss (BatchTopK's batch-level selection)
    for switch in ("sparse_decode", "sparse_backward", "update_threshold"):  # the dense, side-effect-free twins torch.func transforms
        if hasattr(dictionary, switch):
            setattr(dictionary, switch, False)
    trained = _json_or_empty(cfg.model / "train_config.json")
    cache = cfg.cache or trained.get("cache")
    target = cfg.target_cache or trained.get("target_cache")
    if cache is None:
        raise ConfigError(f"{cfg.model} records no training cache; set `cache` to the activation cache of its loss")
    examples = open_cache(cache).manifest.n_tokens
    context = TrainingContext(sparsity_scale=1.0, dead_mask=None)

    def loss(d: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
        x, y = batch
        return d.loss(*d.training_pair(x, y), context).loss

    def batches(batch_size: int, seed: int) -> Iterator[Batch]:
        return cache_pairs(cache, target, batch_size, seed, device)

    return LossSource(DICTIONARY, dictionary, loss, examples, batches)


def _json_or_empty(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
