"""`lm-saes train`: one dictionary from a cache (or any batch iterable) to a dictionary directory.

The directory gets ``config.json`` + ``weights.safetensors`` (normalisation folded in), the
resolved ``train_config.json``, the ``train_log.jsonl`` and, last, ``metrics.json``, which marks
it finished. An interrupted run leaves ``checkpoint/`` and resumes from it with the same config,
reproducing the uninterrupted run exactly.
"""

from __future__ import annotations

import itertools
import json
import shutil
import time
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

import torch

from lm_saes.activations.manifest import read_manifest, write_atomic
from lm_saes.config import TrainConfig, save_resolved
from lm_saes.dictionaries import Dictionary, build_dictionary
from lm_saes.errors import ConfigError
from lm_saes.models.backend import resolve_device
from lm_saes.training.checkpoint import load_checkpoint, remove_checkpoint, save_checkpoint
from lm_saes.training.data import Pair, cache_pairs, iterable_pairs
from lm_saes.training.log import TrainingLog
from lm_saes.training.schedules import total_steps
from lm_saes.training.trainer import Trainer

METRICS_NAME = "metrics.json"
UNCOMPARED = {"overwrite", "progress", "checkpoint_every", "log_every"}  # do not change the result


class TrainResult(NamedTuple):
    output_dir: Path  # the dictionary directory (load with Dictionary.from_pretrained)
    metrics: dict[str, float]  # the last log record
    seconds: float
    resumed_from_step: int  # 0 for a fresh run


def train(cfg: TrainConfig, batches: Iterable | None = None) -> TrainResult:
    """Train ``cfg.dictionary`` on ``cfg.cache`` (or on ``batches``: tensors or (input, target) pairs)."""
    start = time.perf_counter()
    device = resolve_device(cfg.device)
    out = cfg.output_dir
    _prepare_output(cfg)
    if batches is None:
        if cfg.cache is None:
            raise ConfigError("set `cache` to an activation cache's hook directory (or pass batches)")
        pairs = cache_pairs(cfg.cache, cfg.target_cache, cfg.batch_size, cfg.seed, device)
        d_in, d_out = _cache_widths(cfg)
    else:
        pairs = iterable_pairs(batches, device)
        first = next(pairs)
        d_in, d_out = first[0].shape[1], first[1].shape[1]
        pairs = itertools.chain([first], pairs)
    torch.manual_seed(cfg.seed)
    transcoder = cfg.target_cache is not None or d_in != d_out
    trainer = Trainer(cfg, build_dictionary(cfg.dictionary, d_in, d_out, transcoder), device)

    resumed = _resume(cfg, trainer, device)
    if resumed:
        pairs = itertools.islice(pairs, resumed, None)  # skip what the first run consumed
    else:
        head: list[Pair] = list(itertools.islice(pairs, cfg.normalization_batches))
        trainer.fit_scales(head)
        pairs = itertools.chain(head, pairs)

    log = TrainingLog(out / "train_log.jsonl", total_steps(cfg) * cfg.batch_size,
                      trainer.step * cfg.batch_size, cfg.progress)
    records: list[dict[str, float]] = []

    def on_log(record: dict[str, float]) -> None:
        records.append(record)
        log(record)

    try:
        trainer.fit(pairs, on_log, on_checkpoint=lambda: save_checkpoint(out, trainer.state_dict(), _compared(cfg)))
    finally:
        log.close()
    _save(cfg, trainer.dictionary, records[-1])
    return TrainResult(out, records[-1], time.perf_counter() - start, resumed)


def _cache_widths(cfg: TrainConfig) -> tuple[int, int]:
    d_in = read_manifest(cfg.cache).d_model
    d_out = read_manifest(cfg.target_cache).d_model if cfg.target_cache else d_in
    return d_in, d_out


def _compared(cfg: TrainConfig) -> dict:
    return cfg.model_dump(mode="json", exclude=UNCOMPARED)


def _prepare_output(cfg: TrainConfig) -> None:
    out = cfg.output_dir
    if (out / METRICS_NAME).is_file():
        if not cfg.overwrite:
            raise ConfigError(
                f"{out} already holds a finished dictionary; set overwrite=true to replace it or "
                "choose another output_dir"
            )
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def _resume(cfg: TrainConfig, trainer: Trainer, device: torch.device) -> int:
    """Load the checkpoint of an interrupted run of this config; the step it had reached."""
    found = load_checkpoint(cfg.output_dir, device)
    if found is None:
        (cfg.output_dir / "train_log.jsonl").unlink(missing_ok=True)
        return 0
    state, config = found
    if config != _compared(cfg):
        differ = sorted(k for k in config.keys() | _compared(cfg).keys() if config.get(k) != _compared(cfg).get(k))
        raise ConfigError(
            f"{cfg.output_dir} holds a checkpoint of a different run (fields {differ} differ); run "
            "that config to resume it, or delete the checkpoint/ directory to start over"
        )
    trainer.load_state_dict(state)
    _truncate_log(cfg.output_dir / "train_log.jsonl", trainer.step)
    return trainer.step


def _truncate_log(path: Path, step: int) -> None:
    """Drop log lines written after the checkpoint: the resumed run writes them again."""
    if path.is_file():
        kept = [line for line in path.read_text().splitlines() if json.loads(line)["step"] <= step]
        path.write_text("".join(line + "\n" for line in kept))


def _save(cfg: TrainConfig, dictionary: Dictionary, final: dict[str, float]) -> None:
    out = cfg.output_dir
    source = {"cache": str(cfg.cache) if cfg.cache else None, "target_cache": str(cfg.target_cache) if cfg.target_cache else None}
    manifest = read_manifest(cfg.cache) if cfg.cache is not None else None
    if manifest is not None:
        source.update(model=manifest.model, hook_in=manifest.hook)
        source["hook_out"] = read_manifest(cfg.target_cache).hook if cfg.target_cache else manifest.hook
    dictionary.save(out, extra={"source": source})
    save_resolved(cfg, out / "train_config.json")
    write_atomic(out / METRICS_NAME, (json.dumps({"final_batch": final}, indent=2) + "\n").encode())
    remove_checkpoint(out)
