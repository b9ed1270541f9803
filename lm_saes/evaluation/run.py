"""`lm-saes eval DICT_DIR`: every metric of a trained dictionary, into its metrics.json.

Reconstruction and sparsity come from ``tokens`` cached activations (MSE, explained variance,
L0, L1, shrinkage, dead/alive fractions and the density histogram over that window). CE loss
recovered and KL come from splicing the dictionary into its model over ``ce_tokens`` tokens of
the text the cache was generated from.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from pathlib import Path

import torch

from lm_saes.activations.manifest import read_manifest, write_atomic
from lm_saes.activations.reader import open_cache
from lm_saes.activations.synthetic import read_ground_truth
from lm_saes.config import DataConfig, EvalConfig, EvalSettings, ModelConfig
from lm_saes.data.tokens import build_contexts, load_texts
from lm_saes.dictionaries import Dictionary
from lm_saes.dictionaries.base import CONFIG_NAME, METRICS_NAME
from lm_saes.errors import CacheError
from lm_saes.evaluation import metrics as m
from lm_saes.evaluation.splice import spliced_losses_many
from lm_saes.models.backend import load_language_model, resolve_device
from lm_saes.training.data import check_aligned


def evaluate(cfg: EvalConfig) -> dict:
    """Compute the metrics, merge them into ``<dictionary>/metrics.json`` under "eval", return them."""
    device = resolve_device(cfg.device)
    dictionary = Dictionary.from_pretrained(cfg.dictionary, device=device).eval()
    source = json.loads((cfg.dictionary / CONFIG_NAME).read_text()).get("source", {})
    cache_dir = cfg.cache or _path(source.get("cache"))
    if cache_dir is None:
        raise CacheError(f"{cfg.dictionary} does not record its training cache; set `cache`")
    target_dir = cfg.target_cache or (_path(source.get("target_cache")) if dictionary.transcoder else None)
    results = reconstruction_metrics(cfg, {"": dictionary}, cache_dir, target_dir, device)[""]
    if cfg.ce_tokens and has_model(cache_dir):
        results.update(downstream_metrics(cfg, {"": dictionary}, cache_dir, target_dir)[""])
    store_eval(cfg.dictionary, results)
    return results


def store_eval(directory: Path, results: dict) -> None:
    """Merge ``results`` into ``<directory>/metrics.json`` under "eval" (the training record stays)."""
    path = directory / METRICS_NAME
    stored = json.loads(path.read_text()) if path.is_file() else {}
    write_atomic(path, (json.dumps({**stored, "eval": results}, indent=2) + "\n").encode())


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


@torch.no_grad()
def reconstruction_metrics(cfg: EvalSettings, dictionaries: Mapping[str, Dictionary], cache_dir: Path,
                           target_dir: Path | None, device: torch.device) -> dict[str, dict]:
    """Each dictionary's reconstruction and sparsity metrics over the same ``cfg.tokens`` cached
    activations, read once for all of them."""
    source = open_cache(cache_dir, verify="auto", reads=cfg.tokens)  # checksums when the window is the whole cache
    for name, dictionary in dictionaries.items():
        if source.d_model != dictionary.d_in:
            raise CacheError(f"{cache_dir} holds d_model={source.d_model} activations but the dictionary "
                             f"{name} expects d_in={dictionary.d_in}; evaluate it on its own hook")
    kwargs = dict(seed=cfg.seed, device=device, dtype=torch.float32)
    inputs = source.batches(cfg.batch_size, **kwargs)
    if target_dir is not None:
        target = open_cache(target_dir, verify="auto", reads=cfg.tokens)
        check_aligned(source, target)
        pairs = zip(inputs, target.batches(cfg.batch_size, **kwargs))
    else:
        pairs = ((x, x) for x in inputs)
    firing = {name: m.FeatureFiring(d.d_sae, device=device) for name, d in dictionaries.items()}
    totals = {name: m.ReconstructionTotals() for name in dictionaries}  # streamed: memory does not grow with cfg.tokens
    n_batches = max(1, cfg.tokens // cfg.batch_size)
    for x, y in itertools.islice(pairs, n_batches):
        for name, dictionary in dictionaries.items():
            out = dictionary(x)
            firing[name].update(out.acts)
            totals[name].update(out.recon, y, out.acts)
    results = {name: _reconstruction_results(cfg, totals[name], firing[name]) for name in dictionaries}
    truth = read_ground_truth(cache_dir)
    if truth is not None and target_dir is None:
        for name, dictionary in dictionaries.items():
            results[name].update(ground_truth_metrics(dictionary, truth, firing[name].alive()))
    return results


def ground_truth_metrics(dictionary: Dictionary, truth: torch.Tensor, alive: torch.Tensor) -> dict[str, float]:
    """How the decoder directions compare with a synthetic cache's true features: MMCS and the
    features recovered over the truth, and MMCS over the dictionary's live latents."""
    learned = dictionary.W_dec.detach()
    return {"mmcs": m.mmcs(learned, truth), "features_recovered": m.features_recovered(learned, truth),
            "dictionary_mmcs": m.dictionary_mmcs(learned[alive.to(learned.device)], truth)}


def has_model(cache_dir: Path) -> bool:
    """Whether the cache came from a language model (CE and KL need one; a synthetic cache has none)."""
    return read_manifest(cache_dir).config.get("synthetic") is None


def _reconstruction_results(cfg: EvalSettings, totals: m.ReconstructionTotals, firing: m.FeatureFiring) -> dict:
    histogram = firing.density_histogram(cfg.histogram_bins)
    return {
        "tokens": totals.n_tokens, **totals.results(), "dead_fraction": firing.dead_fraction(),
        "alive_fraction": firing.alive_fraction(),
        "density_histogram": {"log10_edges": histogram.edges.tolist(), "counts": histogram.counts.tolist(),
                              "dead": histogram.n_dead},
    }


def downstream_metrics(cfg: EvalSettings, dictionaries: Mapping[str, Dictionary], cache_dir: Path,
                       target_dir: Path | None) -> dict[str, dict]:
    """Each dictionary's CE loss recovered and KL, spliced into the cache's model over the same
    ``cfg.ce_tokens`` tokens (the clean and zero-ablated forwards run once for all of them)."""
    manifest = read_manifest(cache_dir)
    generated = manifest.config
    lm = load_language_model(ModelConfig.model_validate({**generated["model"], "device": cfg.device}))
    data = DataConfig.model_validate({**generated["data"], "max_tokens": cfg.ce_tokens})
    contexts = build_contexts(load_texts(data), lm.tokenizer, data, lm.pad_token_id)
    hook_out = read_manifest(target_dir).hook if target_dir is not None else None
    totals = {name: torch.zeros(4, dtype=torch.float64) for name in dictionaries}
    n_scored = 0
    for tokens, mask in zip(contexts.tokens.split(cfg.ce_batch_size), contexts.mask.split(cfg.ce_batch_size)):
        losses = spliced_losses_many(lm, dictionaries, tokens, manifest.hook, hook_out, mask)
        scored = int(m.predicted_positions(tokens, mask).sum())  # each batch's means, weighted by positions
        for name, loss in losses.items():
            totals[name] += torch.tensor([loss.ce_clean, loss.ce_spliced, loss.ce_zero, loss.kl_spliced]) * scored
        n_scored += scored
    return {name: _downstream_results(total / n_scored, n_scored) for name, total in totals.items()}


def _downstream_results(means: torch.Tensor, n_scored: int) -> dict:
    ce_clean, ce_spliced, ce_zero, kl = means.tolist()
    return {
        "ce_tokens": n_scored, "ce_clean": ce_clean, "ce_spliced": ce_spliced,
        "ce_zero_ablation": ce_zero, "kl_spliced": kl,
        "ce_loss_recovered": m.ce_loss_recovered(ce_clean, ce_spliced, ce_zero),
    }
