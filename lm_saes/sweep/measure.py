"""The sweep's metrics: every finished member and every baseline measured in one pass.

The metrics are ``lm-saes eval``'s own (``evaluation.run``), over the same window of the cache
and the same spliced contexts for all of them; each member's land in its ``metrics.json`` under
"eval", as ``lm-saes eval`` would write them. Baselines (PCA, ICA, the neuron basis, random
directions; ``sweep.baselines``) are fitted on the first ``baseline_fit_tokens`` of the
training stream and kept at each L0 budget: by default the members' own L0s, rounded.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import torch

from lm_saes.dictionaries import Dictionary
from lm_saes.dictionaries.base import METRICS_NAME
from lm_saes.evaluation.run import downstream_metrics, has_model, reconstruction_metrics, store_eval
from lm_saes.models.backend import resolve_device
from lm_saes.sweep.baselines import baseline_dictionary, fit_basis
from lm_saes.sweep.config import SweepConfig
from lm_saes.sweep.members import Member
from lm_saes.sweep.together import is_finished
from lm_saes.training.data import cache_pairs

BASELINE_PREFIX = "baseline/"  # keeps baseline names apart from member names while measuring


def measure(cfg: SweepConfig, members: list[Member], stream_seed: int) -> tuple[dict[str, dict], dict[str, dict]]:
    """(metrics of each finished member, metrics of each baseline ``<method>-l0-<k>``)."""
    finished = [m for m in members if is_finished(m)]
    if not finished:
        return {}, {}
    device = resolve_device(cfg.eval.device)
    first = members[0].train
    dictionaries = {m.name: Dictionary.from_pretrained(m.train.output_dir, device=device).eval() for m in finished}
    if cfg.baselines and first.target_cache is None:  # a transcoder's baselines would need a regression
        for name, baseline in baselines(cfg, finished, stream_seed, device).items():
            dictionaries[BASELINE_PREFIX + name] = baseline
    results = reconstruction_metrics(cfg.eval, dictionaries, first.cache, first.target_cache, device)
    if cfg.eval.ce_tokens and has_model(first.cache):
        for name, downstream in downstream_metrics(cfg.eval, dictionaries, first.cache, first.target_cache).items():
            results[name].update(downstream)
    for m in finished:
        store_eval(m.train.output_dir, results[m.name])
    members_metrics = {m.name: results[m.name] for m in finished}
    baseline_metrics = {name.removeprefix(BASELINE_PREFIX): r for name, r in results.items()
                        if name.startswith(BASELINE_PREFIX)}
    return members_metrics, baseline_metrics


def baselines(cfg: SweepConfig, finished: list[Member], stream_seed: int, device: torch.device) -> dict[str, Dictionary]:
    """Each baseline method at each L0 budget, as a TopK dictionary (see sweep.baselines)."""
    first = finished[0].train
    acts = fit_activations(first.cache, first.batch_size, cfg.baseline_fit_tokens, stream_seed, device)  # [tokens, d]
    budgets = cfg.baseline_l0 or member_l0s(finished)
    budgets = sorted({min(max(k, 1), acts.shape[1]) for k in budgets})
    out = {}
    for method in cfg.baselines:
        basis = fit_basis(method, acts, seed=stream_seed)
        for k in budgets:
            out[f"{method}-l0-{k}"] = baseline_dictionary(basis, k, device=device)
    return out


def fit_activations(cache: Path, batch_size: int, tokens: int, seed: int, device: torch.device) -> torch.Tensor:
    """The first ``tokens`` of the training stream of ``cache`` read ``batch_size`` at a time with ``seed``."""
    pairs = cache_pairs(cache, None, batch_size, seed, device)
    n_batches = math.ceil(tokens / batch_size)
    return torch.cat([x for x, _ in itertools.islice(pairs, n_batches)])[:tokens]


def member_l0s(finished: list[Member]) -> list[int]:
    """Each finished member's L0 on its last training batch, rounded."""
    l0s = []
    for m in finished:
        final = json.loads((m.train.output_dir / METRICS_NAME).read_text())["final_batch"]
        l0s.append(round(final["l0"]))
    return l0s

