"""torch.distributed set-up shared by every stage: which rank am I, and wait for the others.

Launch with torchrun; without it everything runs as rank 0 of 1 and no process group exists.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable
from typing import NamedTuple, TypeVar

import torch
import torch.distributed as dist

from lm_saes.errors import ConfigError, LmSaesError

T = TypeVar("T")


class DistInfo(NamedTuple):
    rank: int
    world_size: int


def init_distributed() -> DistInfo:
    """Join the torchrun process group (NCCL on CUDA, gloo on CPU), or run alone."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend, timeout=datetime.timedelta(hours=2))
    if dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size())
    return DistInfo(0, 1)


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def broadcast_error(message: str | None) -> str | None:
    """Share rank 0's error (or None) with every rank, so all stop together with one message."""
    if not dist.is_initialized():
        return message
    box = [message]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def rank_zero_first(action: Callable[[], T], follow: Callable[[], T]) -> T:
    """``action()`` on rank 0 (or alone), then ``follow()`` on the other ranks once it is done; a
    user error on rank 0 is raised on every rank (there as a ConfigError), so all stop together."""
    if not dist.is_initialized():
        return action()
    result, failure = None, None
    if dist.get_rank() == 0:
        try:
            result = action()
        except LmSaesError as e:
            failure = e
    if (error := broadcast_error(None if failure is None else str(failure))) is not None:
        raise failure if failure is not None else ConfigError(error)
    return result if dist.get_rank() == 0 else follow()
