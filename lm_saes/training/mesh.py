"""The (data, tensor) process mesh of a distributed training run, checked at startup.

Launch with torchrun; ``tensor_parallel`` ranks share one batch and split the features, and the
world splits into ``world_size / tensor_parallel`` data-parallel groups that split the batch.
Without torchrun (or with one process) training is single-device and nothing here runs.
"""

from __future__ import annotations

from enum import Enum
from typing import NamedTuple

import torch
import torch.distributed as dist

from lm_saes.config import TrainConfig
from lm_saes.dictionaries.parallel import SINGLE_DEVICE, Collectives, MeshCollectives
from lm_saes.distributed import init_distributed
from lm_saes.errors import ConfigError


class Axis(str, Enum):
    """Mesh axes: "data" splits the batch rows, "tensor" splits the dictionary's features (or the
    subcomponents of a parameter decomposition)."""

    DATA = "data"
    TENSOR = "tensor"


class ParallelDims(NamedTuple):
    data: int  # data-parallel degree
    tensor: int  # tensor-parallel degree
    data_rank: int  # which share of each batch this rank reads

    @property
    def world_size(self) -> int:
        return self.data * self.tensor


def parallel_dims(cfg: TrainConfig, world_size: int, rank: int) -> ParallelDims:
    """Degrees from a dictionary's config and the world; refuses what does not fit, naming each degree."""
    tp = cfg.tensor_parallel
    check_tensor_parallel(tp, world_size)
    problems = []
    if cfg.dictionary.d_sae % tp:
        problems.append(f"dictionary.d_sae={cfg.dictionary.d_sae} is not a multiple of tensor_parallel={tp}")
    k = getattr(cfg.dictionary, "k", None)
    if k is not None and k > cfg.dictionary.d_sae // tp:
        problems.append(f"dictionary.k={k} exceeds the {cfg.dictionary.d_sae // tp} features of one shard")
    if cfg.resample_every and world_size > 1:
        problems.append("resample_every is single-device only; set it to 0")
    return mesh_dims(tp, world_size, rank, cfg.batch_size, problems)


def check_tensor_parallel(tp: int, world_size: int) -> None:
    if world_size % tp:
        raise ConfigError(
            f"tensor_parallel={tp} does not divide the {world_size} processes torchrun started; "
            "launch a multiple of tensor_parallel processes"
        )


def mesh_dims(tp: int, world_size: int, rank: int, batch_size: int, problems: list[str]) -> ParallelDims:
    """The (data, tensor) degrees of any run, or one error listing every ``problems`` (the trained
    model's own) and a batch that does not split over the data-parallel ranks."""
    check_tensor_parallel(tp, world_size)
    dp = world_size // tp
    if batch_size % dp:
        problems = [*problems, f"batch_size={batch_size} does not split over data_parallel={dp} ranks"]
    if problems:
        raise ConfigError(
            f"cannot train with data_parallel={dp} x tensor_parallel={tp} = {world_size} processes: "
            + "; ".join(problems)
        )
    return ParallelDims(data=dp, tensor=tp, data_rank=rank // tp)


def build_collectives(cfg: TrainConfig, device: torch.device) -> tuple[ParallelDims, Collectives]:
    """Join torchrun's process group (if any) and lay the ranks out as a (data, tensor) mesh."""
    rank, world_size = init_distributed()
    dims = parallel_dims(cfg, world_size, rank)
    return dims, mesh_collectives(dims, device)


def mesh_collectives(dims: ParallelDims, device: torch.device) -> Collectives:
    """The collectives of a (data, tensor) mesh: consecutive ranks share a data shard and split
    the features (or subcomponents)."""
    if dims.world_size == 1:
        return SINGLE_DEVICE
    from torch.distributed.device_mesh import init_device_mesh

    mesh = init_device_mesh(device.type, (dims.data, dims.tensor), mesh_dim_names=(Axis.DATA.value, Axis.TENSOR.value))
    return MeshCollectives(
        dp_group=mesh.get_group(Axis.DATA.value), tp_group=mesh.get_group(Axis.TENSOR.value),
        world_group=dist.group.WORLD,
    )
