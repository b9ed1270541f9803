"""What every training run does around its loop, whatever it trains (a dictionary, a parameter
decomposition): claim the output directory on rank 0, resume from a checkpoint of the same
config, keep the log (JSONL + progress bar, wandb optional).

The checkpoint format is ``training/checkpoint.py``'s: one file per rank holding the trainer's
``state_dict`` and the config fields that decide the result; resuming compares those fields and
drops the log lines the killed run wrote after its checkpoint (the resumed run writes them again).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from lm_saes.artifacts import ArtifactDir
from lm_saes.dictionaries.parallel import Collectives
from lm_saes.distributed import broadcast_error
from lm_saes.errors import ConfigError
from lm_saes.training.checkpoint import load_checkpoint
from lm_saes.training.log import TrainingLog
from lm_saes.training.wandb_log import WandbLog
from lm_saes.artifacts import differing_fields

LOG_NAME = "train_log.jsonl"


def claim_on_rank_zero(comm: Collectives, claim: Callable[[bool], ArtifactDir]) -> ArtifactDir:
    """Rank 0 claims the directory (``claim(True)``); the other ranks then take the same decision
    without effects (``claim(False)``)."""
    claimed: list[ArtifactDir] = []
    on_rank_zero(comm, lambda: claimed.append(claim(True)))
    return claimed[0] if claimed else claim(False)


def on_rank_zero(comm: Collectives, action: Callable[[], Any]) -> None:
    """Run ``action`` on rank 0; if it raises a ConfigError, every rank raises it. A run on one
    device (a sweep member, even under torchrun) does it alone."""
    if not comm.distributed:
        action()
        return
    error = None
    if comm.rank == 0:
        try:
            action()
        except ConfigError as e:
            error = str(e)
    error = broadcast_error(error)
    if error is not None:
        raise ConfigError(error)


def resume(work: Path, trainer: Any, compared: dict, device: torch.device,
           check_state: Callable[[dict], None] | None = None) -> int:
    """Load the checkpoint in ``work`` of an interrupted run whose config fields were ``compared``
    into ``trainer`` (anything with ``comm``, ``step`` and ``load_state_dict``); the step it had
    reached (0, and the old log removed, when there is none). ``check_state`` may refuse a
    checkpoint of the same config that no longer fits (e.g. data of another width)."""
    rank = trainer.comm.rank
    found = load_checkpoint(work, device, rank)
    check_same_step(trainer.comm, found[0]["step"] if found else -1, device)
    if found is None:
        if rank == 0:
            (work / LOG_NAME).unlink(missing_ok=True)
        return 0
    state, config = found
    differ = differing_fields(config, compared)
    if differ:
        raise ConfigError(
            f"{work} holds a checkpoint of a different run (fields {differ} differ); run "
            "that config to resume it, or delete the checkpoint/ directory to start over"
        )
    if check_state is not None:
        check_state(state)
    trainer.load_state_dict(state)
    if rank == 0:
        truncate_log(work / LOG_NAME, trainer.step)
    return trainer.step


def check_same_step(comm: Collectives, step: int, device: torch.device) -> None:
    """Every rank must resume from the same step (a run killed mid-checkpoint may leave a mix)."""
    if not comm.distributed:
        return
    steps = torch.tensor([step, -step], device=device)
    low, neg_high = comm.all_min(steps).tolist()
    if low != -neg_high:
        raise ConfigError(
            "the ranks' checkpoints are from different steps (the run was killed while saving); "
            "delete the checkpoint/ directory to start over"
        )


def truncate_log(path: Path, step: int) -> None:
    """Drop log lines written after the checkpoint: the resumed run writes them again."""
    if path.is_file():
        kept = [line for line in path.read_text().splitlines() if json.loads(line)["step"] <= step]
        path.write_text("".join(line + "\n" for line in kept))


class RunLog:
    """The run's records: kept in memory, written by rank 0 to ``train_log.jsonl`` and its progress
    bar, and sent to wandb when a project is named."""

    def __init__(self, work: Path, comm: Collectives, total: int, done: int, show: bool,
                 wandb: tuple[str, str, dict] | None = None, **bar: Any) -> None:
        """``total`` / ``done``: the bar's count (``bar["count"]``, by default tokens) for the whole
        run and already done; ``wandb``: (project, run name, config) or None; ``bar``: tqdm options."""
        self.comm = comm
        writer = comm.rank == 0
        self.log = TrainingLog(work / LOG_NAME, total, done, show and writer, **bar)
        self.wandb = WandbLog(*wandb) if wandb is not None and writer else None
        self.records: list[dict[str, float]] = []

    def __call__(self, record: dict[str, float]) -> None:
        self.records.append(record)
        if self.comm.rank == 0:
            self.log(record)
        if self.wandb is not None:
            self.wandb(record)

    def close(self) -> None:
        """Close the progress bar and wandb (again: a no-op)."""
        self.log.close()
        if self.wandb is not None:
            self.wandb.close()
            self.wandb = None
