"""Train a sweep's members together: each batch is read from the cache once and fed to every
member on the device; on an accelerator members of one shape step as one stacked model
(``lm_saes.training.stack``: batched matmuls over the members), members of other shapes in their
own stacks; on the CPU each member steps alone (``stack_width``), still on the one read, and the
members' steps run side by side on worker threads that share the cores (``lm_saes.sweep.workers``).

The stream is the one ``lm-saes train`` reads for the members' shared cache, batch size and the
base seed, so a member trains on exactly the batches it would alone, and a stack gives each member
the weights it gets alone. Every member keeps its own directory, log and checkpoints
(``DictionaryRun``); the sweep's state is only what is on disk:

- ``metrics.json`` in a member's directory: finished, never trained again;
- ``failed.json``: it diverged (or ran out of memory); the error is kept, the others go on;
- ``checkpoint/``: interrupted; it resumes from there. The stream restarts at the earliest
  member's step and a member further on waits until the stream reaches its own step (then joins
  the stack of its shape), so a resumed member sees the same batches as in an uninterrupted sweep.

Under torchrun each rank trains its own share of the members (``members[rank::world_size]``)
on its own device, reading the stream itself.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

import torch

from lm_saes.activations.manifest import write_atomic
from lm_saes.activations.synthetic import read_ground_truth
from lm_saes.config import TrainConfig
from lm_saes.dictionaries.base import METRICS_NAME
from lm_saes.dictionaries.parallel import SINGLE_DEVICE
from lm_saes.distributed import barrier, init_distributed
from lm_saes.errors import ConfigError
from lm_saes.models.backend import resolve_device
from lm_saes.sweep.members import Member
from lm_saes.sweep.workers import StepPool, intra_op_threads, worker_count
from lm_saes.training.data import Pair, cache_pairs
from lm_saes.training.mesh import ParallelDims
from lm_saes.training.stack import TrainerStack, stack_key
from lm_saes.training.train import DictionaryRun, cache_widths, finished_with_another_config
from lm_saes.training.trainer import TrainingDiverged

FAILED_NAME = "failed.json"
ONE_DEVICE = ParallelDims(data=1, tensor=1, data_rank=0)


def is_finished(member: Member) -> bool:
    return (member.train.output_dir / METRICS_NAME).is_file()


def check_finished_configs(members: list[Member]) -> None:
    """A finished member is kept only if it was trained with the config it has now."""
    for m in members:
        differ = finished_with_another_config(m.train)
        if differ:
            raise ConfigError(
                f"sweep member {m.name!r} in {m.train.output_dir} was trained with another config (fields "
                f"{differ} differ); delete that directory to train it again, or give the sweep another output_dir"
            )


def failure(member: Member) -> str | None:
    """The error a failed member stopped with, or None."""
    path = member.train.output_dir / FAILED_NAME
    return json.loads(path.read_text())["error"] if path.is_file() else None


def train_together(members: list[Member], stream_seed: int, members_per_pass: int = 0,
                   members_per_stack: int = 0, member_workers: int = 0) -> None:
    """Train every member that is neither finished nor failed, ``members_per_pass`` at a time
    (0: all in one pass over the stream), members of one shape ``members_per_stack`` to a stacked
    model (0: ``stack_width``'s choice), the stacks' steps on ``member_workers`` threads (0:
    ``worker_count``'s choice). Returns when each is finished or failed."""
    check_finished_configs(members)
    rank, world_size = init_distributed()
    todo = [m for m in members if not is_finished(m) and failure(m) is None][rank::world_size]
    if not todo:
        barrier()
        return
    size = members_per_pass or _members_that_fit(todo)
    for start in range(0, len(todo), size):
        _one_pass(todo[start:start + size], stream_seed, members_per_stack, member_workers)
    barrier()  # rank 0 reads every member's outcome from disk next


def _members_that_fit(members: list[Member]) -> int:
    """All of them on the CPU; on a GPU as many as 80% of its free memory holds (stacked: every
    member's step runs at once)."""
    device = resolve_device(members[0].train.device)
    if device.type != "cuda":
        return len(members)
    free, _ = torch.cuda.mem_get_info(device)
    d_in, d_out = cache_widths(members[0].train)
    return fitting_members(int(0.8 * free), [member_bytes(m.train, d_in, d_out) for m in members])


def member_bytes(train: TrainConfig, d_in: int, d_out: int) -> tuple[int, int]:
    """(bytes a member holds for the whole pass, bytes its step needs while it runs): float32
    weights, gradients and Adam's two moments; the [batch, d_sae] pre-activations, activations and
    their gradients."""
    d_sae = train.dictionary.d_sae
    parameters = d_in * d_sae + d_sae * d_out + d_sae + d_out
    return 4 * 4 * parameters, 3 * 4 * train.batch_size * d_sae


def fitting_members(budget: int, sizes: list[tuple[int, int]]) -> int:
    """How many members (at least 1) fit ``budget`` bytes: their held bytes plus their steps (the
    members of a stack step at once), counted at the largest member's."""
    held, step = max(h for h, _ in sizes), max(s for _, s in sizes)
    return max(1, min(len(sizes), budget // (held + step)))


def stack_width(device: torch.device, members_per_stack: int) -> int | None:
    """Members to a stack (None: all of one shape). On the CPU a stack computes what its members
    compute alone, but its [members, batch, d_sae] pre-activations spill the cache: 8 members of
    d_sae 2048 stepped 0.8x as fast stacked as one by one (benchmarks/sweep.py), so one a stack."""
    if members_per_stack:
        return members_per_stack
    return 1 if device.type == "cpu" else None


def _one_pass(members: list[Member], stream_seed: int, members_per_stack: int = 0,
              member_workers: int = 0) -> None:
    first = members[0].train
    device = resolve_device(first.device)
    d_in, d_out = cache_widths(first)
    transcoder = first.target_cache is not None or d_in != d_out
    truth = read_ground_truth(first.cache) if not transcoder else None
    with member_runs() as runs:
        for i, m in enumerate(members):
            runs[m.name] = DictionaryRun.open(m.train, d_in, d_out, transcoder, device, ONE_DEVICE, SINGLE_DEVICE,
                                              progress={"desc": m.name, "position": i, "leave": True},
                                              ground_truth=truth)
        _feed(members, runs, _stream(first, stream_seed, device, runs), stack_width(device, members_per_stack),
              device, member_workers)


@contextmanager
def member_runs() -> Iterator[dict]:
    """The runs (DictionaryRun or DecompositionRun, by member name) of one pass, still training:
    on an error, each that has nothing to resume leaves no empty directory; every one is closed."""
    runs: dict = {}
    try:
        yield runs
    except BaseException:
        for run in runs.values():
            run.output.abandon()
        raise
    finally:
        for run in runs.values():
            run.close()


def _stream(
    first: TrainConfig, stream_seed: int, device: torch.device, runs: dict[str, DictionaryRun]
) -> Iterator[tuple[int, Pair]]:
    """(step, batch) from the earliest member's step on; fresh members fit their scales first."""
    reads = max(run.cfg.total_tokens for run in runs.values())  # the longest member's tokens
    pairs = cache_pairs(first.cache, first.target_cache, first.batch_size, stream_seed, device, reads=reads)
    start = min(run.resumed_from for run in runs.values())
    if start > 0:
        return zip(itertools.count(start), itertools.islice(pairs, start, None))
    head: list[Pair] = list(itertools.islice(pairs, first.normalization_batches))
    for run in runs.values():
        if run.resumed_from == 0:
            run.trainer.initialize(head)
    return enumerate(itertools.chain(head, pairs))


def _feed(members: list[Member], runs: dict[str, DictionaryRun], stream: Iterator[tuple[int, Pair]],
          width: int | None, device: torch.device, member_workers: int = 0) -> None:
    active = {m.name: m for m in members}
    keys = {name: stack_key(run.trainer) for name, run in runs.items()}
    workers = worker_count(device, len(_chunks(list(active), keys, width)), member_workers)
    stacks: dict[tuple[str, ...], TrainerStack] = {}
    pool = StepPool(workers)
    try:
        with intra_op_threads(workers):
            for step, (x, y) in stream:
                # Members at this step (one resumed from a later checkpoint waits for the stream).
                here = [name for name in active if runs[name].trainer.step == step]
                previous, stacks = stacks, {}
                for names in _chunks(here, keys, width):
                    try:  # a stack lives while its members do; one leaving or joining restacks its shape
                        stacks[names] = previous.pop(names, None) or TrainerStack([runs[n].trainer for n in names])
                    except torch.OutOfMemoryError as e:
                        _stack_failed(active, runs, names, e)
                outcomes = pool.run({names: partial(stack.step, x, y) for names, stack in stacks.items()})
                for names, outs in outcomes.items():
                    if isinstance(outs, torch.OutOfMemoryError):
                        del stacks[names]  # its memory goes back to the others now
                        _stack_failed(active, runs, names, outs)
                        continue
                    if isinstance(outs, BaseException):
                        raise outs
                    for name, out in zip(names, outs):
                        advance_member(active, runs, name, (x, y), out)
                if not active:
                    return
    finally:
        pool.close()


def _chunks(names: list[str], keys: dict[str, tuple], width: int | None) -> list[tuple[str, ...]]:
    """``names`` by shape (``keys``), ``width`` to a stack (None: all of a shape)."""
    groups: dict[tuple, list[str]] = {}
    for name in names:
        groups.setdefault(keys[name], []).append(name)
    return [tuple(group[i:i + (width or len(group))]) for group in groups.values()
            for i in range(0, len(group), width or len(group))]


def _stack_failed(active: dict, runs: dict, names: tuple[str, ...], error: torch.OutOfMemoryError) -> None:
    """Out of memory: the whole stack fails, its members step together."""
    for name in names:
        _mark_failed(active.pop(name), runs.pop(name), error)


def advance_member(active: dict, runs: dict, name: str, batch: tuple, out=None,
                   failures: tuple[type[BaseException], ...] = (TrainingDiverged,)) -> None:
    """One step of a sweep member (or the log and checkpoint of a step its stack took: ``out``). A
    member that fails is marked failed and leaves (its device memory goes back to the others); a
    finished one is saved and leaves."""
    run = runs[name]
    try:
        run.trainer.advance(batch, run.on_log, run.on_checkpoint, out)
    except failures as e:
        _mark_failed(active.pop(name), runs.pop(name), e)
        return
    if run.trainer.steps_left == 0:
        run.close()
        run.save()
        del active[name], runs[name]


def _mark_failed(member: Member, run: DictionaryRun, error: Exception) -> None:
    message = str(error)
    if isinstance(error, torch.OutOfMemoryError):
        message = f"out of memory on the device ({error}); lower members_per_pass or members_per_stack"
    run.close()
    record = {"error": message, "step": run.trainer.step}
    write_atomic(run.output.work / FAILED_NAME, (json.dumps(record, indent=2) + "\n").encode())

