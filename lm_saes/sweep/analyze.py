"""Analyze chosen members of a finished sweep into the store, as `lm-saes analyze` would.

Each is stored as dictionary ``<sweep>.<member>``; the sweep page links a member to it through
the directory the store records. A member analyzed before (same directory, same final training
record) is not analyzed again.
"""

from __future__ import annotations

import json
from pathlib import Path

from lm_saes.analysis.stage import run_analysis
from lm_saes.config import AnalyzeConfig, validate_config
from lm_saes.dictionaries.base import METRICS_NAME
from lm_saes.errors import ConfigError
from lm_saes.store import open_store
from lm_saes.sweep.config import SweepConfig
from lm_saes.sweep.record import FINISHED, MEMBER


def analyze_members(cfg: SweepConfig, record: dict) -> list[str]:
    """Analyze the members ``cfg.analyze`` names; the store names of those analyzed now."""
    if cfg.analyze is None:
        return []
    rows = {r["name"]: r for r in record["rows"] if r["kind"] == MEMBER}
    chosen = _chosen(cfg.analyze.members, rows)
    analyzed = []
    for name in chosen:
        row = rows[name]
        store_name = f"{cfg.name}.{name}"
        if row["status"] != FINISHED or _already_analyzed(cfg, store_name, row["dictionary_dir"]):
            continue
        settings = {**cfg.analyze.settings, "dictionary": row["dictionary_dir"], "dictionary_name": store_name,
                    "store": cfg.store.model_dump(mode="json"), "progress": cfg.progress,
                    "replace_stored": cfg.replace_stored}
        run_analysis(validate_config(AnalyzeConfig, settings, source=f"analyze.settings (member {name!r})"))
        analyzed.append(store_name)
    return analyzed


def _chosen(members, rows: dict[str, dict]) -> list[str]:
    if members == "all":
        return list(rows)
    if members == "frontier":
        return [name for name, row in rows.items() if row["frontier"]]
    unknown = [m for m in members if m not in rows]
    if unknown:
        raise ConfigError(f"analyze.members names {unknown}, which are not members of this sweep; "
                          f"its members: {', '.join(rows)}")
    return list(members)


def _already_analyzed(cfg: SweepConfig, store_name: str, directory: str) -> bool:
    with open_store(cfg.store) as store:
        stored = store.dictionary(store_name)
        if stored is None or stored.get("path") != directory or store.analysis(store_name) is None:
            return False
    final = json.loads((Path(directory) / METRICS_NAME).read_text()).get("final_batch")
    return stored.get("metrics", {}).get("final_batch") == final
