"""Tensor parallelism of a decomposition over its subcomponents, applied by functions.

Each tensor-parallel rank keeps a contiguous slice of the C subcomponents of every decomposed
matrix: V's columns, U's rows, and the importance MLPs of those subcomponents (the first axis of
every weight and bias). Which axis holds the subcomponents is declared once, in
``component_axis``; ``shard_`` and ``gather_state_dict`` use it. The masked forward sums the
slices' outputs over the ranks (``components.masked_forward``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from lm_saes.dictionaries.parallel import Collectives, all_gather_cat, feature_slice
from lm_saes.errors import ConfigError


def component_axis(name: str) -> int:
    """The axis of a decomposition state-dict entry that indexes subcomponents."""
    return 1 if name.endswith(".V_own") else 0  # U_own [C, d_out]; importance weights [C, in, out], biases [C, out]


def check_divisible(model, comm: Collectives) -> None:
    odd = {d.name: d.C for d in model.plan.values() if d.C % comm.tp_size}
    if odd:
        raise ConfigError(f"tensor_parallel={comm.tp_size} must divide C of every decomposed matrix; these do not: "
                          f"{odd}")


@torch.no_grad()
def shard_(model, comm: Collectives):
    """Keep this rank's slice of every module's subcomponents, in place, and attach the collectives."""
    check_divisible(model, comm)
    for name, param in model.named_parameters():
        axis = component_axis(name)
        keep = feature_slice(param.shape[axis], comm.tp_rank, comm.tp_size)
        param.data = param.data.narrow(axis, keep.start, keep.stop - keep.start).clone()
    model.comm = comm
    return model


@torch.no_grad()
def gather_state_dict(model) -> dict[str, Tensor]:
    """The whole decomposition's state dict on every rank: slices concatenated along their subcomponents."""
    comm = model.comm
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if comm.tp_size == 1:
        return state
    for name, value in state.items():
        axis = component_axis(name)
        state[name] = all_gather_cat(value.movedim(axis, -1), comm.tp_group).movedim(-1, axis).contiguous()
    return state
