"""`lm-saes train` of an SPD config: decompose a target's matrices into its directory.

The output directory is a "decomposition" artifact (``lm_saes.artifacts``): a finished one of
another config is refused unless ``overwrite``, which trains the new one beside it and swaps it in
when complete. The run around the loop is the dictionaries' (``training/run.py``): checkpoints
every ``checkpoint_every`` steps with exact resume (kill it and run the same command again), the
JSONL log and progress bar, wandb when named, and the NaN guard.

Under torchrun the ranks form the same (data, tensor) mesh as a dictionary's: data-parallel
ranks take their share of every batch (``batch_size`` is the global batch) and average
gradients; tensor-parallel ranks each hold a slice of every matrix's subcomponents. Rank 0
writes the directory from the gathered decomposition and evaluates it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, NamedTuple

import torch

from lm_saes.artifacts import ArtifactDir, claim, config_identity, write_atomic
from lm_saes.dictionaries.parallel import Collectives
from lm_saes.distributed import barrier, init_distributed
from lm_saes.models.backend import resolve_device
from lm_saes.spd.config import SPDTrainConfig
from lm_saes.spd.directory import DECOMPOSITION, METRICS_NAME, save_decomposition
from lm_saes.spd.evaluate import evaluate_decomposition
from lm_saes.spd.model import ComponentModel
from lm_saes.spd.parallel import gather_state_dict, shard_
from lm_saes.spd.sampling import Layout
from lm_saes.spd.targets import OpenTarget, open_target
from lm_saes.spd.trainer import SPDTrainer, checkpoint_every
from lm_saes.training.checkpoint import checkpoint_path, remove_checkpoint, save_checkpoint
from lm_saes.training.mesh import ParallelDims, mesh_collectives, mesh_dims
from lm_saes.training.run import RunLog, claim_on_rank_zero, resume

UNCOMPARED = {"overwrite", "progress", "checkpoint_every", "log_every", "wandb_project", "device"}  # not in the result


class SPDTrainResult(NamedTuple):
    output_dir: Path  # the decomposition directory (load with lm_saes.spd.load_decomposition)
    metrics: dict[str, Any]  # the evaluation (metrics.json's "eval")
    seconds: float
    resumed_from_step: int  # 0 for a fresh run


def spd_dims(cfg: SPDTrainConfig, world_size: int, rank: int) -> ParallelDims:
    """The (data, tensor) mesh of an SPD run; tensor_parallel must divide every module's C."""
    tp = cfg.tensor_parallel
    problems = [f"spd.C={c} is not a multiple of tensor_parallel={tp}" for c in {cfg.spd.C, *cfg.spd.C_per_module.values()}
                if c % tp]
    return mesh_dims(tp, world_size, rank, cfg.batch_size, sorted(problems))


def claim_decomposition(cfg: SPDTrainConfig, effects: bool = True) -> ArtifactDir:
    return claim(cfg.output_dir, DECOMPOSITION, config_identity(cfg, UNCOMPARED | {"output_dir"}),
                 replace=cfg.overwrite, effects=effects, resumable=lambda work: checkpoint_path(work).is_file())


def train_spd(cfg: SPDTrainConfig) -> SPDTrainResult:
    """Train (or resume) the decomposition of ``cfg``; see the module docstring."""
    start = time.perf_counter()
    device = resolve_device(cfg.device)
    rank, world_size = init_distributed()
    dims = spd_dims(cfg, world_size, rank)
    comm = mesh_collectives(dims, device)
    target = open_target(cfg.target, device, cfg.spd.output_loss)
    run = DecompositionRun.open(cfg, target, device, dims, comm)
    with run.output:  # a failure before the first checkpoint removes the directory this run created
        try:
            if not run.resumed_from:
                run.trainer.faithfulness_warmup()
            batches = target.batches(run.trainer.step, cfg.batch_size, cfg.seed, run.layout, device)
            run.trainer.fit(batches, run.on_log, run.on_checkpoint)
        finally:
            run.close()
        metrics = run.save()
    return SPDTrainResult(cfg.output_dir, metrics, time.perf_counter() - start, run.resumed_from)


class DecompositionRun:
    """One decomposition being trained into its directory: its SPDTrainer, log and checkpoints.

    ``open`` claims the directory (everything is written into ``output.work``), builds the
    decomposition from ``cfg.seed`` and resumes from a checkpoint of the same config; the caller
    runs the faithfulness warmup on a fresh run, feeds batches to ``trainer`` (``fit``, or
    ``advance`` with ``on_log`` / ``on_checkpoint``), then ``close`` and ``save``. The same shape
    as the dictionaries' ``DictionaryRun``, so several can be trained over one batch stream.
    """

    def __init__(self, cfg: SPDTrainConfig, output: ArtifactDir, trainer: SPDTrainer, target: OpenTarget,
                 layout: Layout, compared: dict, resumed_from: int, log: RunLog) -> None:
        self.cfg, self.output, self.trainer, self.target, self.layout = cfg, output, trainer, target, layout
        self.compared, self.resumed_from, self.log = compared, resumed_from, log

    @classmethod
    def open(cls, cfg: SPDTrainConfig, target: OpenTarget, device: torch.device, dims: ParallelDims,
             comm: Collectives, progress: dict | None = None) -> DecompositionRun:
        """``progress``: more keyword arguments of the tqdm bar."""
        layout = Layout(dims.data, dims.data_rank, dims.tensor, comm.tp_rank)
        compared = {**cfg.model_dump(mode="json", exclude=UNCOMPARED), "world_size": dims.world_size}
        output = claim_on_rank_zero(comm, lambda effects: claim_decomposition(cfg, effects))
        with output:  # nothing trained yet: a failure here removes a directory this run created
            torch.manual_seed(cfg.seed)
            model = ComponentModel(target.model, cfg.spd, target.example)  # the same start on every rank
            if comm.distributed:
                shard_(model, comm)
            model.comm = comm
            trainer = SPDTrainer(cfg, model.to(device), target.output_loss, device, comm, layout)
            resumed = resume(output.work, trainer, compared, device)
            wandb = (cfg.wandb_project, cfg.output_dir.name, cfg.model_dump(mode="json")) if cfg.wandb_project else None
            log = RunLog(output.work, comm, cfg.steps, trainer.step, cfg.progress, wandb,
                         **{"count": "step", "unit": "step", "desc": "spd", **(progress or {})})
        return cls(cfg, output, trainer, target, layout, compared, resumed, log)

    @property
    def records(self) -> list[dict[str, float]]:
        return self.log.records

    def on_log(self, record: dict[str, float]) -> None:
        self.log(record)

    def on_checkpoint(self) -> None:
        save_checkpoint(self.output.work, self.trainer.state_dict(), self.compared, self.trainer.comm.rank)

    def close(self) -> None:
        self.log.close()

    def save(self) -> dict[str, Any]:
        """Write and evaluate the finished decomposition, and put it in place (every rank calls this);
        its evaluation (empty on ranks other than 0)."""
        comm = self.trainer.comm
        metrics = _finish(self.cfg, self.output.work, self.trainer.model, self.target, self.records[-1],
                          self.trainer.device)
        self.output.commit()  # rank 0 (the others claimed without effects)
        if comm.distributed:
            barrier()
        return metrics


def _finish(cfg: SPDTrainConfig, out: Path, model: ComponentModel, target: OpenTarget, last: dict[str, float],
            device: torch.device) -> dict[str, Any]:
    """Gather the decomposition, and on rank 0 save and evaluate it; metrics.json is written last."""
    comm = model.comm
    state = gather_state_dict(model)  # every rank takes part
    metrics: dict[str, Any] = {}
    if comm.rank == 0:
        if comm.distributed:  # evaluate a whole copy on this rank alone
            model.remove()
            model = ComponentModel(target.model, cfg.spd, target.example)
            model.load_state_dict(state)
            model = model.to(device)
        save_decomposition(out, model, state, cfg, target.record, target.output_loss)
        metrics = evaluate_decomposition(model, target, cfg.eval_examples, min(cfg.eval_batch_size, cfg.eval_examples),
                                         device)
    if comm.distributed:
        barrier()  # every rank is done with its checkpoint before rank 0 removes them
    if comm.rank == 0:
        record = {"final_batch": last, "schedule": {"steps": cfg.steps, "checkpoint_every": checkpoint_every(cfg)},
                  "eval": metrics}
        write_atomic(out / METRICS_NAME, (json.dumps(record, indent=2) + "\n").encode())
        remove_checkpoint(out)
    return metrics
