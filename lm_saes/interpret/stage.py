"""`lm-saes interpret`: explain and score a dictionary's features, and its baselines', into the store.

``run_interpret(cfg)`` interprets ``cfg.dictionary`` (``run.py``); with ``baselines`` it then builds,
analyzes and interprets each baseline the same way (``baselines.py``) and writes the comparison
of their mean scores (``report.py``) to ``output_dir``. A dry run only counts the dictionary's
requests: no baseline is built.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from lm_saes.interpret.config import InterpretConfig
from lm_saes.interpret.report import comparison, write_report
from lm_saes.interpret.run import InterpretResult, interpret_dictionary
from lm_saes.store import open_store


class InterpretOutcome(NamedTuple):
    results: list[InterpretResult]  # the dictionary first, then its baselines
    report: list[dict]  # the comparison rows (report.comparison); [] without baselines
    files: list[Path]  # report.json and report.csv, when written


def run_interpret(cfg: InterpretConfig) -> InterpretOutcome:
    with open_store(cfg.store) as store:
        results = [interpret_dictionary(cfg, store, cfg.dictionary)]
        if not cfg.baselines or cfg.dry_run:
            return InterpretOutcome(results, [], [])
        from lm_saes.interpret.baselines import build_baselines  # the sweep's fitting and the analysis: heavy

        for name in build_baselines(cfg, store):
            results.append(interpret_dictionary(cfg.model_copy(update={"features": None}), store, name))
    rows = comparison(results)
    return InterpretOutcome(results, rows, list(write_report(rows, cfg.resolved_output_dir())))
