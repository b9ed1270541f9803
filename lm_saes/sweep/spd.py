"""A sweep of SPD decompositions: members trained together over one stream of the target's inputs.

The members (``members.py``) are SPDTrainConfigs sharing one target, batch size and device. The
stream is the one `lm-saes train` draws for the base ``train.seed``; a member's own seed sets its
initialisation and its stochastic masks, so a member whose seed is the base's is exactly the
decomposition `lm-saes train` makes of its config. Every member keeps its own directory, log and
checkpoints (``DecompositionRun``), as a dictionary member does: a finished one is kept, an
interrupted one resumes from its checkpoint (the stream restarts at the earliest member's step;
one further on waits for it), one whose loss diverges is marked failed and the others go on.

Each finished member's row comes from the evaluation its training wrote (metrics.json "eval"):

- ``ci_l0``: subcomponents with causal importance above the threshold per input, summed over
  the matrices; ``alive``: subcomponents above it on some input;
- ``reconstruction``: the output loss (MSE for toys and cached modules, KL for language models)
  of the target with every matrix replaced by its subcomponents times their causal importances;
  ``reconstruction_rounded``: with the importances rounded to 0 / 1 at the threshold;
- ``mmcs``, ``ml2r``: against a toy's true features, averaged over the matrices that have them;
- ``faithfulness``: mean (W - V U)^2 over the decomposed parameters.

The Pareto front is reconstruction against CI-L0, both lower is better.
"""

from __future__ import annotations

import itertools
import json
from statistics import mean

import torch

from lm_saes.artifacts import COMPLETE, config_identity, identity_hash, read_marker
from lm_saes.dictionaries.parallel import SINGLE_DEVICE
from lm_saes.distributed import barrier, init_distributed
from lm_saes.errors import ConfigError
from lm_saes.models.backend import resolve_device
from lm_saes.spd.config import SPDTrainConfig
from lm_saes.spd.directory import METRICS_NAME
from lm_saes.spd.sampling import SINGLE
from lm_saes.spd.targets import open_target
from lm_saes.spd.train import UNCOMPARED, DecompositionRun
from lm_saes.sweep.members import Member
from lm_saes.sweep.together import ONE_DEVICE, advance_member, failure, is_finished, member_runs
from lm_saes.training.loop import TrainingDiverged

# The record's columns and front (see report.build_record).
METRICS = ("ci_l0", "reconstruction", "reconstruction_rounded", "mmcs", "ml2r", "alive", "faithfulness")
FRONTIERS = {"reconstruction": "reconstruction loss (CI-masked)"}
X = "ci_l0"  # the fronts' other axis
MINIMISED = ("reconstruction",)  # fronts whose metric is better lower
RECORD = {"columns": METRICS, "fronts": FRONTIERS, "x": X, "minimised": MINIMISED}  # build_record's settings


def is_decomposition_sweep(members: list[Member]) -> bool:
    return isinstance(members[0].train, SPDTrainConfig)


def row_metrics(evaluation: dict) -> dict[str, float]:
    """A finished member's table metrics from its evaluation (see the module docstring)."""
    loss = next(k.removesuffix("_ci_masked") for k in evaluation if k.endswith("_ci_masked"))
    metrics = {"ci_l0": evaluation["ci_l0_total"], "reconstruction": evaluation[f"{loss}_ci_masked"],
               "reconstruction_rounded": evaluation[f"{loss}_rounded"], "alive": evaluation["alive_total"],
               "faithfulness": evaluation["faithfulness"]}
    for name in ("mmcs", "ml2r"):
        if evaluation.get(name):
            metrics[name] = mean(evaluation[name].values())
    return metrics


def member_metrics(members: list[Member]) -> dict[str, dict]:
    """Each finished member's row metrics."""
    return {m.name: row_metrics(json.loads((m.train.output_dir / METRICS_NAME).read_text())["eval"])
            for m in members if is_finished(m)}


def train_decompositions(members: list[Member], stream_seed: int, members_per_pass: int = 0) -> None:
    """Train every member that is neither finished nor failed, ``members_per_pass`` at a time (0:
    all in one pass over the stream); under torchrun each rank its share."""
    _check_finished_configs(members)
    rank, world_size = init_distributed()
    todo = [m for m in members if not is_finished(m) and failure(m) is None][rank::world_size]
    size = members_per_pass or len(todo) or 1
    for start in range(0, len(todo), size):
        _one_pass(todo[start:start + size], stream_seed)
    barrier()  # rank 0 reads every member's outcome from disk next


def _check_finished_configs(members: list[Member]) -> None:
    for m in members:
        marker = read_marker(m.train.output_dir)
        identity = identity_hash(config_identity(m.train, UNCOMPARED | {"output_dir"}))
        if marker is not None and marker.get("status") == COMPLETE and marker.get("identity") != identity:
            raise ConfigError(f"sweep member {m.name!r} in {m.train.output_dir} was trained with another config; "
                              "delete that directory to train it again, or give the sweep another output_dir")


def _one_pass(members: list[Member], stream_seed: int) -> None:
    first = members[0].train
    device = resolve_device(first.device)
    with member_runs() as runs:
        for i, m in enumerate(members):
            target = open_target(m.train.target, device, m.train.spd.output_loss)  # its own copy: runs hook into it
            run = runs[m.name] = DecompositionRun.open(m.train, target, device, ONE_DEVICE, SINGLE_DEVICE,
                                                       progress={"desc": m.name, "position": i, "leave": True})
            if not run.resumed_from:
                run.trainer.faithfulness_warmup()
        start = min(run.trainer.step for run in runs.values())
        stream = next(iter(runs.values())).target.batches(start, first.batch_size, stream_seed, SINGLE, device)
        _feed(members, runs, zip(itertools.count(start), stream))


def _feed(members: list[Member], runs: dict[str, DecompositionRun], stream) -> None:
    active = {m.name: m for m in members}
    for step, batch in stream:
        for name in list(active):
            if runs[name].trainer.step > step:  # resumed from a later checkpoint: wait for the stream
                continue
            advance_member(active, runs, name, batch, failures=(TrainingDiverged, torch.OutOfMemoryError))
        if not active:
            return
