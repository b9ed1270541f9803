"""`lm-saes analyze`: analyze a dictionary (``analyze.py``) and store the result (``lm_saes.store``).

The store gets the dictionary (its config, the training source and metrics.json), the model and
cache it was analyzed on (no cache record when the model ran on the fly), and the analysis run with one document per feature. The run becomes
visible only once every feature is written; an interrupted run leaves the previous complete one
in place (see ``lm_saes.store.writer``), so a failed analysis can simply be run again.

A stored dictionary is keyed by its name and its directory's identity
(``artifacts.directory_identity``): a name that another directory's dictionary holds is refused
before the analysis runs, unless ``replace_stored``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from tqdm.auto import tqdm

from lm_saes.analysis.analyze import analyze_features, load_analysis_inputs
from lm_saes.artifacts import directory_identity
from lm_saes.config import AnalyzeConfig
from lm_saes.dictionaries.base import CONFIG_NAME, METRICS_NAME
from lm_saes.errors import ConfigError
from lm_saes.store import open_store
from lm_saes.store.schema import DICTIONARIES
from lm_saes.spd.directory import is_decomposition
from lm_saes.store.store import NameTakenError, Store

_PATHS = ("model", "cache", "target_cache")  # the keys of a dictionary's ``source`` that may be local paths


class StoredAnalysis(NamedTuple):
    dictionary: str  # the dictionary's name in the store
    analysis: str  # the analysis name
    n_features: int
    summary: dict


def dictionary_name(cfg: AnalyzeConfig) -> str:
    return cfg.dictionary_name or Path(cfg.dictionary).resolve().name


def run_analysis(cfg: AnalyzeConfig) -> StoredAnalysis:
    """Analyze every feature of ``cfg.dictionary`` on ``cfg.cache`` (or on the fly) into the store;
    an SPD decomposition's subcomponents on its target's inputs (``decomposition.py``)."""
    if is_decomposition(cfg.dictionary):
        return _run_decomposition_analysis(cfg)
    if cfg.target_inputs is not None:
        raise ConfigError(f"target_inputs analyzes an SPD decomposition, and {cfg.dictionary} holds none; analyze a "
                          "dictionary on `cache` or `on_the_fly`")
    inputs = load_analysis_inputs(cfg)
    name, identity = dictionary_name(cfg), directory_identity(cfg.dictionary)
    with open_store(cfg.store) as store:
        if not cfg.replace_stored and (holder := store.name_holder(DICTIONARIES, name, identity)) is not None:
            raise _taken(cfg, name, holder)  # before the analysis runs
        summary, features = analyze_features(cfg, *inputs)
        source = inputs.source.describe()
        store.upsert_model(source["model"], {"config": source["model_config"]})
        if source["path"] is not None:
            store.upsert_cache(source["path"], {
                "model": source["model"], "hook": source["hook"], "layout": source["layout"],
                "n_tokens": source["n_tokens"], "d_model": source["d_model"],
            })
        try:
            store.upsert_dictionary(name, _dictionary_doc(cfg.dictionary), identity=identity, replace=cfg.replace_stored)
        except NameTakenError as e:  # taken while this analysis ran
            raise _taken(cfg, name, e.holder) from e
        n = _write(cfg, store, name, summary, features)
    return StoredAnalysis(name, cfg.name, n, summary)


def _run_decomposition_analysis(cfg: AnalyzeConfig) -> StoredAnalysis:
    """A decomposition is stored beside the dictionaries (kind "decomposition", with its modules)."""
    from lm_saes.analysis.decomposition import analyze_decomposition

    name, identity = dictionary_name(cfg), directory_identity(cfg.dictionary)
    with open_store(cfg.store) as store:
        if not cfg.replace_stored and (holder := store.name_holder(DICTIONARIES, name, identity)) is not None:
            raise _taken(cfg, name, holder)
        summary, features = analyze_decomposition(cfg)
        try:
            store.upsert_dictionary(name, _decomposition_doc(cfg.dictionary, summary), identity=identity,
                                    replace=cfg.replace_stored)
        except NameTakenError as e:
            raise _taken(cfg, name, e.holder) from e
        n = _write(cfg, store, name, summary, features)
    return StoredAnalysis(name, cfg.name, n, summary)


def _write(cfg: AnalyzeConfig, store: Store, name: str, summary: dict, features: Iterable[dict]) -> int:
    """One analysis run of ``name``'s features, visible once every one is written."""
    bar = tqdm(features, total=summary["d_sae"], unit="feature", desc="analyze: store",
               disable=not cfg.progress, dynamic_ncols=True)
    with store.begin_analysis(name, cfg.name, meta={"cache": summary["cache"]}, n_features=summary["d_sae"]) as writer:
        n = writer.write_features(bar)
        writer.complete(summary)
    return n


def _taken(cfg: AnalyzeConfig, name: str, holder: dict) -> ConfigError:
    other = Path(cfg.dictionary).resolve()
    return ConfigError(
        f"the store already holds a dictionary named {name!r}, from {holder.get('path', 'another directory')}; "
        f"this one is {other}. Store it under another name (--set dictionary_name={other.parent.name}-{other.name}) "
        "or replace the stored one and its analyses (--set replace_stored=true)"
    )


def _dictionary_doc(directory: Path) -> dict:
    """What the store shows of a dictionary: its config, where it came from, its metrics."""
    meta = json.loads((directory / CONFIG_NAME).read_text())
    metrics_path = directory / METRICS_NAME
    return {
        "path": str(Path(directory).resolve()),
        "kind": meta["kind"], "d_in": meta["d_in"], "d_out": meta["d_out"], "d_sae": meta["d_sae"],
        "transcoder": meta["transcoder"], "config": meta["dictionary"], "source": absolute_paths(meta.get("source", {})),
        "metrics": json.loads(metrics_path.read_text()) if metrics_path.is_file() else {},
    }


def _decomposition_doc(directory: Path, summary: dict) -> dict:
    """What the store shows of a decomposition: its target, its settings, its modules (each with its
    features' range and its own metrics) and its overall metrics."""
    record = json.loads((directory / CONFIG_NAME).read_text())
    metrics_path = directory / METRICS_NAME
    names = [m["name"] for m in summary["modules"]]
    metrics, per_module = split_by_module(json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}, names)
    modules = [{**record["modules"][m["name"]], "name": m["name"], "first": m["first"], "live": m["live"],
                "metrics": per_module[m["name"]], **({"plane": m["plane"]} if "plane" in m else {})}
               for m in summary["modules"]]
    return {
        "path": str(Path(directory).resolve()),
        "kind": "decomposition", "d_sae": summary["d_sae"], "modules": modules,
        "config": record["spd"], "source": absolute_paths(record["target"]), "metrics": metrics,
    }


def split_by_module(metrics: dict, modules: list[str]) -> tuple[dict, dict[str, dict]]:
    """A decomposition's metrics.json as the store holds it (module names have dots, which store keys
    may not): the overall metrics, and each module's (``eval``'s per-module dicts, and ``final_batch``'s
    ``<metric>/<module>`` entries as ``final_<metric>``)."""
    per_module: dict[str, dict] = {m: {} for m in modules}
    overall = {}
    for key, value in metrics.get("eval", {}).items():
        if isinstance(value, dict) and set(value) <= set(modules):
            for m, v in value.items():
                per_module[m][key] = v
        else:
            overall[key] = value
    final = {}
    for key, value in metrics.get("final_batch", {}).items():
        metric, _, module = key.partition("/")
        if module in per_module:
            per_module[module][f"final_{metric}"] = value
        else:
            final[key] = value
    return {**metrics, "eval": overall, "final_batch": final}, per_module


def absolute_paths(source: dict) -> dict:
    """``source`` with the local paths it names (model directory, caches) made absolute, so that a
    server started in any directory finds them; hub names and paths that do not exist here are kept."""
    out = dict(source)
    for key in _PATHS:
        value = out.get(key)
        if isinstance(value, str) and value and Path(value).exists():
            out[key] = str(Path(value).resolve())
    return out
