"""A sweep's member steps run side by side in worker threads on the CPU.

The members of a sweep share each batch but no tensor, so their steps are independent. On the CPU a
single member's step leaves cores idle: the embedding-bag and scatter backward of the sparse decoder
run on one thread, and the rest scales sub-linearly with threads. With W workers, each step's
member steps (one per stack) are shared out to W threads, each running its ops with cores / W
intra-op threads (the longest steps first, timed on the previous step, so the workers finish
together), and the step ends when all are done: every member still sees the batches it sees alone,
in order.

Every CPU op a member's step runs gives the same bits at any intra-op thread count (the sweep's
tests and ``benchmarks/sweep.py`` compare the weights with those trained alone, bit for bit). On an
accelerator the stacks already keep the device busy: one worker, the calling thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import torch


def worker_count(device: torch.device, stacks: int, requested: int = 0) -> int:
    """Workers for a pass of ``stacks`` stacks: ``requested`` if set, else on the CPU one per
    intra-op thread torch has, on an accelerator one; never more than the stacks."""
    if device.type != "cpu" and not requested:
        return 1
    return max(1, min(stacks, requested or torch.get_num_threads()))


@contextmanager
def intra_op_threads(workers: int) -> Iterator[int]:
    """Torch's intra-op threads shared out among ``workers`` (at least one each), restored after."""
    before = torch.get_num_threads()
    each = max(1, before // workers)
    torch.set_num_threads(each)
    try:
        yield each
    finally:
        torch.set_num_threads(before)


class StepPool:
    """Runs one batch's member steps on ``workers`` threads (1: in the calling thread)."""

    def __init__(self, workers: int) -> None:
        self.executor = ThreadPoolExecutor(workers, thread_name_prefix="member") if workers > 1 else None
        self.seconds: dict[Hashable, float] = {}  # each task's last duration: the longest go first

    def run(self, tasks: dict[Hashable, Callable[[], Any]]) -> dict[Hashable, Any]:
        """Every task's result, or the exception it raised (returned, not raised: the caller
        decides which failures end only that task's members)."""
        if self.executor is None:
            return {key: self._timed(key, task) for key, task in tasks.items()}
        order = sorted(tasks, key=lambda key: -self.seconds.get(key, 0.0))
        futures = {key: self.executor.submit(self._timed, key, tasks[key]) for key in order}
        return {key: futures[key].result() for key in tasks}

    def _timed(self, key: Hashable, task: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        try:
            return task()
        except Exception as e:  # noqa: BLE001 - handed back to the caller, which re-raises what it does not handle
            return e
        finally:
            self.seconds[key] = time.perf_counter() - start

    def close(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(cancel_futures=True)
