"""`lm-saes train`: one dictionary from a cache (or any batch iterable) to a dictionary directory.

The directory gets ``config.json`` + ``weights.safetensors`` (normalisation folded in), the
resolved ``train_config.json``, the ``train_log.jsonl`` and, last, ``metrics.json``, which marks
it finished. It is a "dictionary" artifact (``lm_saes.artifacts``): ``overwrite`` trains the new
dictionary beside a finished one and swaps it in only when it is complete. An interrupted run
leaves ``checkpoint/`` and resumes from it with the same config, reproducing the uninterrupted
run exactly; a run that fails before its first checkpoint removes the directory it created.

Under torchrun the ranks form a (data, tensor) mesh (``training/mesh.py``): each data-parallel
group reads its share of every batch (``batch_size`` is the global batch), the tensor-parallel
ranks of a group split the features. Rank 0 writes the directory; each rank checkpoints its own
state. Given ``batches`` instead of a cache, each rank's iterable must be its own share.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

import torch

from lm_saes.activations.manifest import read_manifest
from lm_saes.artifacts import PARTIAL, ArtifactDir, claim, config_identity, differing_fields, write_atomic
from lm_saes.activations.synthetic import read_ground_truth
from lm_saes.config import TrainConfig, save_resolved
from lm_saes.dictionaries import Dictionary, build_dictionary
from lm_saes.dictionaries.base import METRICS_NAME
from lm_saes.dictionaries.parallel import Collectives, shard_
from lm_saes.distributed import barrier
from lm_saes.errors import ConfigError
from lm_saes.models.backend import resolve_device
from lm_saes.training.checkpoint import checkpoint_path, remove_checkpoint, save_checkpoint
from lm_saes.training.data import Pair, cache_pairs, iterable_pairs
from lm_saes.training.live import load_source, model_pairs
from lm_saes.training.mesh import ParallelDims, build_collectives
from lm_saes.training.run import RunLog, claim_on_rank_zero, resume
from lm_saes.training.schedules import resolved_schedule, total_steps
from lm_saes.training.trainer import Trainer

UNCOMPARED = {"overwrite", "progress", "checkpoint_every", "log_every", "wandb_project"}  # do not change the result
TRAIN_CONFIG_NAME = "train_config.json"  # the resolved config a finished directory was trained with
DICTIONARY = "dictionary"  # the artifact kind of a dictionary directory


class TrainResult(NamedTuple):
    output_dir: Path  # the dictionary directory (load with Dictionary.from_pretrained)
    metrics: dict[str, float]  # the last log record
    seconds: float
    resumed_from_step: int  # 0 for a fresh run


def train(cfg: TrainConfig, batches: Iterable | None = None) -> TrainResult:
    """Train ``cfg.dictionary`` on ``cfg.cache`` (or on ``batches``: tensors or (input, target) pairs)."""
    start = time.perf_counter()
    device = resolve_device(cfg.device)
    dims, comm = build_collectives(cfg, device)
    rows = cfg.batch_size // dims.data  # this data-parallel rank's share of each batch
    if batches is None and cfg.on_the_fly is not None:
        src = cfg.on_the_fly
        lm, widths = load_source(src)
        pairs = model_pairs(lm, src, rows, cfg.seed, device, dims.data_rank, dims.data)
        d_in, d_out = widths[src.hook], widths[src.target_hook or src.hook]
    elif batches is None:
        if cfg.cache is None:
            raise ConfigError("set `cache` to an activation cache's hook directory, or `on_the_fly` "
                              "(or pass batches to lm_saes.train)")
        pairs = cache_pairs(cfg.cache, cfg.target_cache, rows, cfg.seed, device, dims.data_rank, dims.data,
                            reads=cfg.total_tokens)
        d_in, d_out = cache_widths(cfg)
    else:
        pairs = iterable_pairs(batches, device)
        first = next(pairs)
        d_in, d_out = first[0].shape[1], first[1].shape[1]
        pairs = itertools.chain([first], pairs)
    live_transcoder = cfg.on_the_fly is not None and cfg.on_the_fly.target_hook is not None
    transcoder = cfg.target_cache is not None or live_transcoder or d_in != d_out
    truth = read_ground_truth(cfg.cache) if cfg.target_cache is None and batches is None else None
    run = DictionaryRun.open(cfg, d_in, d_out, transcoder, device, dims, comm, ground_truth=truth)
    with run.output:  # a failure before the first checkpoint removes the directory this run created
        try:
            if run.resumed_from:
                pairs = itertools.islice(pairs, run.resumed_from, None)  # skip what the first run consumed
            else:
                head: list[Pair] = list(itertools.islice(pairs, cfg.normalization_batches))
                run.trainer.initialize(head)
                pairs = itertools.chain(head, pairs)
            run.trainer.fit(pairs, run.on_log, run.on_checkpoint)
        finally:
            run.close()
        final = run.save()
    return TrainResult(cfg.output_dir, final, time.perf_counter() - start, run.resumed_from)


class DictionaryRun:
    """One dictionary being trained into its directory: the Trainer, its log and its checkpoints.

    ``open`` claims the directory (``output``: everything is written into ``output.work``),
    builds the dictionary from ``cfg.seed`` and resumes from a checkpoint of the same config; the
    caller feeds batches to ``trainer`` (``fit`` or ``advance`` with ``on_log`` /
    ``on_checkpoint``), then ``close`` and ``save``; after a failure ``output.abandon()``.
    """

    def __init__(self, cfg: TrainConfig, output: ArtifactDir, trainer: Trainer, dims: ParallelDims,
                 resumed_from: int, log: RunLog) -> None:
        self.cfg, self.output, self.trainer, self.dims, self.resumed_from = cfg, output, trainer, dims, resumed_from
        self.log = log

    @property
    def records(self) -> list[dict[str, float]]:
        return self.log.records

    @classmethod
    def open(
        cls, cfg: TrainConfig, d_in: int, d_out: int, transcoder: bool, device: torch.device,
        dims: ParallelDims, comm: Collectives, progress: dict | None = None, ground_truth: torch.Tensor | None = None,
    ) -> DictionaryRun:
        """``progress``: keyword arguments of the tqdm bar (a sweep names and stacks its members');
        ``ground_truth``: the cache's true features, if it has them (the log reports MMCS)."""
        output = claim_on_rank_zero(comm, lambda effects: claim_dictionary(cfg, effects))
        with output:  # nothing trained yet: a failure here removes a directory this run created
            torch.manual_seed(cfg.seed)
            dictionary = build_dictionary(cfg.dictionary, d_in, d_out, transcoder)  # the same on every rank
            if comm.distributed:
                shard_(dictionary, comm)
            trainer = Trainer(cfg, dictionary, device, comm, ground_truth)
            resumed = resume(output.work, trainer, _compared(cfg, dims), device,
                             lambda state: _check_shapes(cfg, trainer.dictionary, state["dictionary"]))
            wandb = (cfg.wandb_project, cfg.output_dir.name, cfg.model_dump(mode="json")) if cfg.wandb_project else None
            log = RunLog(output.work, comm, total_steps(cfg) * cfg.batch_size, trainer.step * cfg.batch_size,
                         cfg.progress, wandb, **(progress or {}))
        return cls(cfg, output, trainer, dims, resumed, log)

    def on_log(self, record: dict[str, float]) -> None:
        self.log(record)

    def on_checkpoint(self) -> None:
        save_checkpoint(self.output.work, self.trainer.state_dict(), _compared(self.cfg, self.dims),
                        self.trainer.comm.rank)

    def close(self) -> None:
        """Close the progress bar and wandb (again: a no-op)."""
        self.log.close()

    def save(self) -> dict[str, float]:
        """Write the finished dictionary and put it in place (every rank calls this); the last log record."""
        comm = self.trainer.comm
        _save(self.cfg, self.output.work, self.trainer.dictionary, self.records[-1], comm)
        self.output.commit()  # rank 0 (the others claimed without effects)
        if comm.distributed:
            barrier()
        return self.records[-1]


def claim_dictionary(cfg: TrainConfig, effects: bool = True) -> ArtifactDir:
    """``cfg.output_dir`` as a dictionary artifact (see ``lm_saes.artifacts``)."""
    return claim(cfg.output_dir, DICTIONARY, config_identity(cfg, UNCOMPARED | {"output_dir"}),
                 replace=cfg.overwrite, legacy=_legacy_identity, effects=effects,
                 resumable=lambda work: checkpoint_path(work).is_file())


def _legacy_identity(directory: Path) -> dict | str | None:
    """A dictionary written before artifact.json: the identity of its train_config.json when it is
    finished; PARTIAL for an interrupted run (its checkpoint's config is checked on resuming)."""
    saved = directory / TRAIN_CONFIG_NAME
    if not (directory / METRICS_NAME).is_file() or not saved.is_file():
        return PARTIAL if checkpoint_path(directory).is_file() else None
    return {k: v for k, v in json.loads(saved.read_text()).items() if k not in UNCOMPARED | {"output_dir"}}


def cache_widths(cfg: TrainConfig) -> tuple[int, int]:
    d_in = read_manifest(cfg.cache).d_model
    d_out = read_manifest(cfg.target_cache).d_model if cfg.target_cache else d_in
    return d_in, d_out


def _compared(cfg: TrainConfig, dims: ParallelDims) -> dict:
    return {**cfg.model_dump(mode="json", exclude=UNCOMPARED), "world_size": dims.world_size}


def finished_with_another_config(cfg: TrainConfig) -> list[str]:
    """The fields (those that change the result) in which the finished dictionary at
    ``cfg.output_dir`` was trained differently from ``cfg``; [] if none, or if unfinished."""
    saved = cfg.output_dir / TRAIN_CONFIG_NAME
    if not (cfg.output_dir / METRICS_NAME).is_file() or not saved.is_file():
        return []
    trained = {k: v for k, v in json.loads(saved.read_text()).items() if k not in UNCOMPARED}
    return differing_fields(trained, cfg.model_dump(mode="json", exclude=UNCOMPARED))


def _check_shapes(cfg: TrainConfig, dictionary: Dictionary, saved: dict[str, torch.Tensor]) -> None:
    """A checkpoint of the same config over data of another width (the cache was regenerated)."""
    differ = [f"{name} {tuple(saved[name].shape)} -> {tuple(t.shape)}"
              for name, t in dictionary.state_dict().items() if name in saved and saved[name].shape != t.shape]
    if differ:
        raise ConfigError(
            f"the checkpoint in {cfg.output_dir} was trained on activations of another width than the "
            f"data now ({'; '.join(differ)}): the cache changed since. Delete the checkpoint/ "
            "directory to start over on the new data"
        )


def _save(cfg: TrainConfig, out: Path, dictionary: Dictionary, final: dict[str, float], comm: Collectives) -> None:
    """Every rank calls this (the shards are gathered); rank 0 writes into ``out``."""
    source = {"cache": str(cfg.cache) if cfg.cache else None, "target_cache": str(cfg.target_cache) if cfg.target_cache else None}
    manifest = read_manifest(cfg.cache) if cfg.cache is not None else None
    if manifest is not None:
        source.update(model=manifest.model, hook_in=manifest.hook)
        source["hook_out"] = read_manifest(cfg.target_cache).hook if cfg.target_cache else manifest.hook
    if cfg.on_the_fly is not None:
        src = cfg.on_the_fly
        source.update(model=src.model.name, hook_in=src.hook, hook_out=src.target_hook or src.hook, on_the_fly=True)
    dictionary.save(out, extra={"source": source})
    if comm.rank == 0:
        save_resolved(cfg, out / TRAIN_CONFIG_NAME)
        record = {"final_batch": final, "schedule": resolved_schedule(cfg)}  # what the defaults resolved to
        write_atomic(out / METRICS_NAME, (json.dumps(record, indent=2) + "\n").encode())
    if comm.distributed:
        barrier()  # every rank has finished with its checkpoint before rank 0 removes them
    if comm.rank == 0:
        remove_checkpoint(out)
