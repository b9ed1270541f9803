"""The training loop every trainer shares (a dictionary's, a parameter decomposition's).

``fit`` iterates over batches, ``advance`` takes one step and then logs and checkpoints when
their turn comes; the subclass supplies ``train_step(*batch)`` (one optimizer step, returning
something with a ``loss``) and ``log_record(out, *batch, items_per_s)``. Around them: the
time spent waiting for batches (``input_wait`` in the log), the items-per-second rate, and a
guard that stops on a non-finite loss before any bad state reaches a checkpoint.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import torch
from torch import Tensor

from lm_saes.dictionaries.parallel import Collectives
from lm_saes.errors import LmSaesError


class TrainingDiverged(LmSaesError):
    """The loss became NaN or infinite."""


class LoopPlan(NamedTuple):
    steps: int  # optimizer steps of the whole run
    log_every: int  # steps between log records
    checkpoint_every: int  # steps between checkpoints (0: only at the end)
    items_per_step: int  # tokens (or examples) one step consumes, for the rate in the log


class TrainingLoop:
    """``fit`` / ``advance`` / ``check_finite`` over a subclass's ``train_step`` and ``log_record``.

    Distributed, every rank runs the same steps in lockstep (``comm``)."""

    diverged_hint = "lower `lr`"  # what the NaN guard's message suggests

    def __init__(self, plan: LoopPlan, device: torch.device, comm: Collectives) -> None:
        self.plan, self.device, self.comm = plan, device, comm
        self.step = 0
        self.nonfinite = torch.zeros((), dtype=torch.bool, device=device)  # any bad loss since the last check
        self._clock: tuple[float, int] | None = None  # (time, step) of the first step taken, for the rate
        self._waited: float | None = None  # seconds ``fit`` has waited for batches since then

    # --- what a trainer supplies ----------------------------------------------------------

    def train_step(self, *batch: Tensor) -> Any:
        raise NotImplementedError

    def log_record(self, out: Any, *batch_and_rate: Any) -> dict[str, float]:
        raise NotImplementedError

    # --- the loop -------------------------------------------------------------------------

    def fit(self, batches: Iterator[tuple], on_log: Callable[[dict[str, float]], None],
            on_checkpoint: Callable[[], None]) -> None:
        """Train until the plan's last step; log every log_every steps; checkpoint every
        checkpoint_every. The log's ``input_wait`` is the share of the time spent waiting for batches."""
        self._waited = 0.0
        for batch in self._timed(itertools.islice(batches, self.steps_left)):
            self.advance(batch, on_log, on_checkpoint)
        if self.steps_left:
            raise LmSaesError(f"the batch stream ended after {self.step} of {self.plan.steps} steps")

    def _timed(self, batches: Iterator[tuple]) -> Iterator[tuple]:
        """``batches``, adding the time spent waiting for each (once stepping began) to ``_waited``."""
        while True:
            asked = time.perf_counter()
            batch = next(batches, None)
            if self._clock is not None:
                self._waited += time.perf_counter() - asked
            if batch is None:
                return
            yield batch

    @property
    def steps_left(self) -> int:
        return self.plan.steps - self.step

    def advance(self, batch: tuple, on_log: Callable[[dict[str, float]], None],
                on_checkpoint: Callable[[], None], out: Any = None) -> None:
        """One step of ``fit``: train (unless a stack of trainers already took this step: its
        ``out``), then log and checkpoint when their turn comes."""
        if self._clock is None:
            self._clock = (time.perf_counter(), self.step)
        if out is None:
            out = self.train_step(*batch)
        last = self.steps_left == 0
        if self.step % self.plan.log_every == 0 or last:
            self.check_finite()
            start, step_at_start = self._clock
            elapsed = time.perf_counter() - start
            record = self.log_record(out, *batch, (self.step - step_at_start) * self.plan.items_per_step / elapsed)
            if self._waited is not None:  # fed by ``fit`` (a sweep feeds ``advance`` itself)
                record["input_wait"] = self._waited / elapsed
            on_log(record)
        every = self.plan.checkpoint_every
        if every and self.step % every == 0 and not last:
            self.check_finite()
            on_checkpoint()

    def check_finite(self) -> None:
        if bool(self.comm.all_any(self.nonfinite)):
            raise TrainingDiverged(
                f"the loss became NaN or infinite before step {self.step}; training stopped. The "
                f"last good checkpoint (if any) is kept in the output directory. {self.diverged_hint[0].upper()}"
                f"{self.diverged_hint[1:]}."
            )
