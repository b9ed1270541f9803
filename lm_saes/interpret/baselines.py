"""Baselines of an interpreted dictionary, built as `lm-saes sweep` builds them and analyzed as it was.

Each method of ``InterpretConfig.baselines`` is fitted (``lm_saes.sweep.baselines``) on the first
activations of the dictionary's training cache and read at the dictionary's L0 (its last training
batch's, rounded, as the sweep does), saved as an ordinary dictionary directory
``<output_dir>/baselines/<method>-l0-<k>/`` and analyzed with the dictionary's own analysis
settings. When the dictionary is a member of a stored sweep, the fit is the sweep's (its training
stream, seed and ``baseline_fit_tokens``) and the baseline is stored as ``<sweep>.<method>-l0-<k>``,
the name of the sweep's baseline row, which then shows its interpretability; otherwise as
``<dictionary>.<method>-l0-<k>``. A baseline analyzed before from the same directory is reused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

from lm_saes.activations.manifest import read_manifest
from lm_saes.analysis.stage import run_analysis
from lm_saes.config import AnalyzeConfig, validate_config
from lm_saes.dictionaries.base import CONFIG_NAME, METRICS_NAME
from lm_saes.errors import LmSaesError
from lm_saes.interpret.config import InterpretConfig
from lm_saes.models.backend import resolve_device
from lm_saes.store import Store
from lm_saes.sweep.baselines import baseline_dictionary, fit_basis
from lm_saes.sweep.measure import fit_activations
from lm_saes.sweep.record import MEMBER

SWEEP_CONFIG = "sweep_config.json"  # lm_saes.sweep.run.CONFIG_NAME
FIT_BATCH = 4096  # tokens per read of a dictionary's own training cache


class Fit(NamedTuple):
    """Where a dictionary's baselines are fitted, and the prefix of their store names."""

    cache: Path
    batch_size: int
    tokens: int
    seed: int
    prefix: str


def build_baselines(cfg: InterpretConfig, store: Store) -> list[str]:
    """Fit, save and analyze ``cfg.baselines`` of ``cfg.dictionary``; their store names."""
    record = store.dictionary(cfg.dictionary)
    run = store.analysis(cfg.dictionary, cfg.analysis)
    if record is None or run is None or not record.get("path"):
        raise LmSaesError(f"dictionary {cfg.dictionary!r} has no complete analysis {cfg.analysis!r} with a directory "
                          "in the store; run `lm-saes analyze` on it first")
    directory = Path(record["path"])
    meta = json.loads((directory / CONFIG_NAME).read_text())
    if meta.get("transcoder"):
        raise LmSaesError(f"{cfg.dictionary!r} is a transcoder; the baselines are bases of one activation space "
                          "(input = target), so a transcoder has none: leave baselines out")
    fit = _fit(cfg, store, directory, meta)
    k = l0_budget(directory, meta)
    names, pending = [], []
    for method in cfg.baselines:
        name = f"{fit.prefix}.{method}-l0-{k}"
        out = (cfg.resolved_output_dir() / "baselines" / f"{method}-l0-{k}").resolve()
        names.append(name)
        if not _analyzed(store, name, out, cfg.analysis):
            pending.append((method, name, out))
    if pending:
        device = resolve_device(cfg.device)
        acts = fit_activations(fit.cache, fit.batch_size, fit.tokens, fit.seed, device)  # [tokens, d]
        for method, name, out in pending:
            dictionary = baseline_dictionary(fit_basis(method, acts, seed=fit.seed), k, device=device)
            dictionary.save(out, extra={"source": meta.get("source", {}), "baseline": {
                "method": method, "l0": k, "of": cfg.dictionary, "fit_tokens": fit.tokens, "seed": fit.seed}})
            settings = {**run["summary"]["config"], "dictionary": str(out), "dictionary_name": name,
                        "name": cfg.analysis, "store": cfg.store.model_dump(mode="json"), "progress": cfg.progress}
            run_analysis(validate_config(AnalyzeConfig, settings, source=f"the analysis of baseline {name!r}"))
    return names


def l0_budget(directory: Path, meta: dict) -> int:
    """The dictionary's L0 on its last training batch, rounded (TopK: k), as a sweep's baselines use."""
    metrics_path = directory / METRICS_NAME
    final = json.loads(metrics_path.read_text()).get("final_batch", {}) if metrics_path.is_file() else {}
    if "l0" in final:
        return max(1, round(final["l0"]))
    if "k" in meta.get("dictionary", {}):
        return int(meta["dictionary"]["k"])
    raise LmSaesError(f"{directory} records no L0 (no metrics.json final_batch.l0): its baselines need one")


def _fit(cfg: InterpretConfig, store: Store, directory: Path, meta: dict) -> Fit:
    """The sweep's fit when the dictionary is one of its members (the sweep that named it
    ``<sweep>.<member>`` first, when several list its directory), else its own training cache's."""
    found = []
    for listed in store.sweeps():
        sweep = store.sweep(listed["name"]) or {}
        for row in sweep.get("rows", []):
            if row.get("kind") == MEMBER and row.get("dictionary_dir") == str(directory) and row.get("config"):
                named = cfg.dictionary in (row.get("dictionary"), f"{listed['name']}.{row['name']}")
                found.append((not named, listed["name"], sweep, row))
    if found:
        _, name, sweep, row = min(found, key=lambda f: f[:2])
        train = row["config"]
        settings_path = Path(sweep.get("output_dir", "")) / SWEEP_CONFIG
        settings = json.loads(settings_path.read_text()) if settings_path.is_file() else {}
        seed = settings.get("train", {}).get("seed", 0)  # the sweep's stream seed: its base's
        tokens = settings.get("baseline_fit_tokens", cfg.baseline_fit_tokens)
        return Fit(Path(train["cache"]), train["batch_size"], tokens, seed, name)
    cache = meta.get("source", {}).get("cache")
    if not cache:
        raise LmSaesError(f"{directory} was trained on the fly; its baselines are fitted on its training cache, "
                          "which it does not have")
    batch = min(FIT_BATCH, read_manifest(Path(cache)).n_tokens)  # a smaller cache yields no whole batch of 4096
    return Fit(Path(cache), batch, cfg.baseline_fit_tokens, cfg.seed, cfg.dictionary)


def _analyzed(store: Store, name: str, directory: Path, analysis: str) -> bool:
    stored = store.dictionary(name)
    return (stored is not None and stored.get("path") == str(directory) and (directory / CONFIG_NAME).is_file()
            and store.analysis(name, analysis) is not None)
