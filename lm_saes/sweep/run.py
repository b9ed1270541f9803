"""`lm-saes sweep CONFIG`: expand the members, train them together, measure them and the
baselines, write the table, the plots and the record. A sweep of SPD decompositions (``spd.py``)
is trained and measured its own way, then tabulated, plotted and recorded the same way.

Everything the sweep learns is on disk before the store is written: each member's directory,
``results.json`` / ``results.csv`` and the plots. Then the record goes to the store, and the
members ``analyze`` names are analyzed into it. Run it again after an interruption: finished
members are kept, unfinished ones resume from their checkpoints, and the measurements, table,
plots and record are made afresh from what is on disk.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import NamedTuple

from lm_saes.artifacts import ArtifactDir, claim, directory_identity
from lm_saes.config import TrainConfig, save_resolved
from lm_saes.distributed import init_distributed, rank_zero_first
from lm_saes.errors import ConfigError, StoreError
from lm_saes.sweep.analyze import analyze_members
from lm_saes.sweep.config import SweepConfig
from lm_saes.sweep.measure import measure
from lm_saes.sweep.members import MEMBERS_DIR, Member, expand_members, param_labels
from lm_saes.sweep.heatmaps import write_heatmaps
from lm_saes.sweep.plots import write_plots
from lm_saes.sweep import spd
from lm_saes.sweep.report import METRICS, baseline_row, build_record, member_row, write_results
from lm_saes.sweep.together import failure, train_together

CONFIG_NAME = "sweep_config.json"
SWEEP = "sweep"  # the artifact kind of a sweep directory


class SweepResult(NamedTuple):
    record: dict  # see lm_saes.sweep.record
    output_dir: Path
    files: list[Path]  # results.json, results.csv and the plots
    analyzed: list[str]  # the members analyzed into the store by this run, by their store names
    seconds: float


def run_sweep(cfg: SweepConfig) -> SweepResult | None:
    """Run the sweep; on rank 0 the result (other torchrun ranks only train: None)."""
    start = time.perf_counter()
    members = expand_members(cfg)
    stream_seed = cfg.train.get("seed", TrainConfig.model_fields["seed"].default)  # the base's: the batch order
    rank, _ = init_distributed()
    labels = param_labels(members)  # dotted path -> column label (field names hold no dots in MongoDB)
    varied = list(labels.values())
    decompositions = spd.is_decomposition_sweep(members)
    if decompositions and cfg.analyze is not None:
        raise ConfigError("[analyze] takes dictionary members; a sweep of SPD decompositions has none: leave it out")
    output = rank_zero_first(lambda: _start(cfg, members, labels), lambda: claim_sweep(cfg, effects=False))
    with output:  # a sweep that fails before any member trained leaves no directory behind
        if decompositions:
            spd.train_decompositions(members, stream_seed, cfg.members_per_pass)
        else:
            train_together(members, stream_seed, cfg.members_per_pass, cfg.members_per_stack, cfg.member_workers)
    if rank != 0:
        return None
    if decompositions:  # measured by their own evaluation; no baselines
        rows = _rows(members, labels, spd.member_metrics(members), {}, spd.METRICS)
        record = build_record(cfg.name, cfg.output_dir, labels, rows, True, **spd.RECORD)
    else:
        member_metrics, baseline_metrics = measure(cfg, members, stream_seed)
        rows = _rows(members, labels, member_metrics, baseline_metrics)
        record = build_record(cfg.name, cfg.output_dir, labels, rows, complete=True)
    files = [*write_results(record, cfg.output_dir), *write_plots(record, cfg.output_dir),
             *write_heatmaps(record, cfg.output_dir)]
    output.commit()
    if cfg.record:
        try:
            _save_record(cfg, record)
        except StoreError as e:
            raise StoreError(f"{e}\nThe sweep itself is finished and kept: {files[0]} holds its table. Run the "
                             "same command again once the store is back to record it (nothing is retrained).") from e
    analyzed = analyze_members(cfg, record)
    return SweepResult(record, cfg.output_dir, files, analyzed, time.perf_counter() - start)


def _start(cfg: SweepConfig, members: list[Member], labels: dict[str, str]) -> ArtifactDir:
    """Claim the directory, save the resolved config and record the sweep as running (rank 0)."""
    output = claim_sweep(cfg)
    with output:
        save_resolved(cfg, cfg.output_dir / CONFIG_NAME)
        if cfg.record:
            _save_record(cfg, build_record(cfg.name, cfg.output_dir, labels, _rows(members, labels, {}, {}),
                                            **(spd.RECORD if spd.is_decomposition_sweep(members) else {}),
                                            complete=False))
    return output


def claim_sweep(cfg: SweepConfig, effects: bool = True) -> ArtifactDir:
    """``cfg.output_dir`` as a sweep artifact, identified by the sweep's name. A sweep grows in place
    (finished members are kept, new grid points trained), so a complete one is taken up again."""
    return claim(cfg.output_dir, SWEEP, {"name": cfg.name}, reuse=True, legacy=_legacy_identity, effects=effects,
                 resumable=lambda work: any((work / MEMBERS_DIR).glob("*/*")),
                 replace_hint="give the sweep another output_dir")


def _legacy_identity(directory: Path) -> dict | None:
    saved = directory / CONFIG_NAME
    return {"name": json.loads(saved.read_text())["name"]} if saved.is_file() else None


def _rows(members: list[Member], labels: dict[str, str], member_metrics: dict[str, dict],
          baseline_metrics: dict[str, dict], columns: tuple[str, ...] = METRICS) -> list[dict]:
    rows = [member_row(m.name, m.variant, {labels[p]: v for p, v in m.params.items()}, m.train.output_dir,
                       member_metrics.get(m.name), failure(m), m.train.model_dump(mode="json"), columns)
            for m in members]
    return rows + [baseline_row(name, metrics) for name, metrics in baseline_metrics.items()]


def _save_record(cfg: SweepConfig, record: dict) -> None:
    """Write the record, keyed by the sweep's name and its directory: a sweep of that name from
    another output_dir is refused (before anything trains, on the first call), unless replace_stored."""
    from lm_saes.store import open_store
    from lm_saes.store.store import NameTakenError

    with open_store(cfg.store) as store:
        try:
            store.upsert_sweep(cfg.name, {k: v for k, v in record.items() if k != "name"},
                               identity=directory_identity(cfg.output_dir), replace=cfg.replace_stored)
        except NameTakenError as e:
            raise ConfigError(
                f"the store already holds a sweep named {cfg.name!r}, from {e.holder.get('output_dir')}; this one "
                f"writes {cfg.output_dir.resolve()}. Give it another name (--set name=...) or replace the stored "
                "record (--set replace_stored=true)"
            ) from e
