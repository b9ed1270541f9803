"""How a dictionary's maths talks to its peers under data and tensor parallelism.

A dictionary computes on one device; ``Collectives`` are the few points where it needs the
other ranks. The single-device default does nothing at each of them. Under tensor parallelism
(TP) the features are split into contiguous shards, one per TP rank (encoder columns, decoder
rows, per-feature vectors); under data parallelism (DP) the batch rows are split. The points:

    enter(x)       before the encoder: identity; backward sums the gradient over TP (each shard
                   contributes its part of d loss / d x, e.g. to b_dec through the centring)
    reduce(y)      a per-shard partial sum (decoder output, a penalty summed over features):
                   forward sums over TP; backward is the identity (every rank holds the same loss)
    kth_largest    the k-th largest of candidates spread over the feature shards (TopK) or over
                   every rank (BatchTopK's batch-level top k): each rank offers its own top k
    feature_sum    a no-grad sum over the feature shards (counts of dead features, L0 for logs)
    batch_mean     a no-grad mean over the DP ranks of a per-rank mean (equal batch shares)
    batch_any      a no-grad elementwise OR over the DP ranks (which features fired)
    batch_rows     the whole batch: every DP rank's rows, in rank order (no grad; initialisation)
    all_min / all_any                     no-grad reductions over every rank
    average_gradients                     the DP gradient mean after backward

Which dimension of each parameter holds the features is declared once, as data, in
``Dictionary.feature_dims``; ``shard_`` and ``gather_state_dict`` use it.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from jaxtyping import Float
from torch import Tensor


class Collectives:
    """Single device: every collective is the identity."""

    tp_size, tp_rank, dp_size, rank = 1, 0, 1, 0

    def enter(self, x: Tensor) -> Tensor:
        return x

    def reduce(self, y: Tensor) -> Tensor:
        return y

    def kth_largest(self, candidates: Float[Tensor, "rows n"], k: int, over: str = "features") -> Float[Tensor, "rows 1"]:
        """The k-th largest value of each row, over every rank's candidates (``over``: "features"
        for the TP shards, "all" for every rank of the mesh)."""
        return candidates.topk(k, dim=-1).values[:, -1:]

    def feature_sum(self, t: Tensor) -> Tensor:
        return t

    def batch_mean(self, t: Tensor) -> Tensor:
        return t

    def batch_any(self, t: Tensor) -> Tensor:
        return t

    def batch_rows(self, t: Tensor) -> Tensor:
        return t

    def all_min(self, t: Tensor) -> Tensor:
        return t

    def all_any(self, t: Tensor) -> Tensor:
        return t

    def average_gradients(self, parameters: list[Tensor]) -> None:
        pass

    @property
    def distributed(self) -> bool:
        return False


SINGLE_DEVICE = Collectives()


class _SumGradients(torch.autograd.Function):
    """Forward: identity. Backward: all-reduce (sum) over the group."""

    @staticmethod
    def forward(ctx, x: Tensor, group: Any) -> Tensor:
        ctx.group = group
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, group=ctx.group)
        return grad, None


class _SumForward(torch.autograd.Function):
    """Forward: all-reduce (sum) over the group. Backward: identity."""

    @staticmethod
    def forward(ctx, y: Tensor, group: Any) -> Tensor:
        y = y.contiguous().clone()
        dist.all_reduce(y, group=group)
        return y

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        return grad, None


def all_gather_cat(t: Tensor, group: Any) -> Tensor:
    """Concatenate every group member's ``t`` along the last dimension (ordered by rank)."""
    parts = [torch.empty_like(t) for _ in range(dist.get_world_size(group))]
    dist.all_gather(parts, t.contiguous(), group=group)
    return torch.cat(parts, dim=-1)


class MeshCollectives(Collectives):
    """torch.distributed collectives over a (data, tensor) process mesh; ``None`` groups are size 1."""

    def __init__(self, dp_group: Any, tp_group: Any, world_group: Any = None) -> None:
        self.dp_group, self.tp_group, self.world_group = dp_group, tp_group, world_group
        self.tp_size = dist.get_world_size(tp_group) if tp_group is not None else 1
        self.tp_rank = dist.get_rank(tp_group) if tp_group is not None else 0
        self.dp_size = dist.get_world_size(dp_group) if dp_group is not None else 1
        self.rank = dist.get_rank()

    @property
    def distributed(self) -> bool:
        return True

    def enter(self, x: Tensor) -> Tensor:
        return _SumGradients.apply(x, self.tp_group) if self.tp_size > 1 else x

    def reduce(self, y: Tensor) -> Tensor:
        return _SumForward.apply(y, self.tp_group) if self.tp_size > 1 else y

    def kth_largest(self, candidates: Tensor, k: int, over: str = "features") -> Tensor:
        group = self.tp_group if over == "features" else self.world_group
        if dist.get_world_size(group) > 1:
            candidates = all_gather_cat(candidates.detach(), group)
        return candidates.topk(k, dim=-1).values[:, -1:]

    @torch.no_grad()
    def feature_sum(self, t: Tensor) -> Tensor:
        if self.tp_size == 1:
            return t
        t = t.detach().clone()
        dist.all_reduce(t, group=self.tp_group)
        return t

    @torch.no_grad()
    def batch_mean(self, t: Tensor) -> Tensor:
        if self.dp_size == 1:
            return t
        t = t.detach().clone()
        dist.all_reduce(t, group=self.dp_group)
        return t / self.dp_size

    @torch.no_grad()
    def batch_any(self, t: Tensor) -> Tensor:
        if self.dp_size == 1:
            return t
        return self._max(t.to(torch.uint8), self.dp_group).bool()

    @torch.no_grad()
    def batch_rows(self, t: Tensor) -> Tensor:
        """Every DP rank's rows of ``t``, concatenated in rank order (the whole batch)."""
        if self.dp_size == 1:
            return t
        parts = [torch.empty_like(t) for _ in range(self.dp_size)]
        dist.all_gather(parts, t.detach().contiguous(), group=self.dp_group)
        return torch.cat(parts)

    @torch.no_grad()
    def all_min(self, t: Tensor) -> Tensor:
        t = t.detach().clone()
        dist.all_reduce(t, op=dist.ReduceOp.MIN, group=self.world_group)
        return t

    @torch.no_grad()
    def all_any(self, t: Tensor) -> Tensor:
        return self._max(t.to(torch.uint8), self.world_group).bool()

    @staticmethod
    def _max(t: Tensor, group: Any) -> Tensor:
        t = t.detach().clone()
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=group)
        return t

    @torch.no_grad()
    def average_gradients(self, parameters: list[Tensor]) -> None:
        """Mean of each gradient over the DP ranks (each rank's loss is a mean over its share)."""
        if self.dp_size == 1:
            return
        for p in parameters:
            if p.grad is not None:
                dist.all_reduce(p.grad, group=self.dp_group)
                p.grad /= self.dp_size


def feature_slice(d_sae: int, tp_rank: int, tp_size: int) -> slice:
    """The contiguous block of features held by TP rank ``tp_rank``."""
    width = d_sae // tp_size
    return slice(tp_rank * width, (tp_rank + 1) * width)


@torch.no_grad()
def shard_(dictionary: Any, collectives: Collectives) -> Any:
    """Keep this rank's feature shard of every tensor in ``feature_dims``, in place, and attach
    the collectives. ``d_sae`` stays the whole dictionary's size."""
    full = dictionary.d_sae
    if full % collectives.tp_size:
        raise ValueError(f"d_sae={full} does not split into {collectives.tp_size} equal shards")
    keep = feature_slice(full, collectives.tp_rank, collectives.tp_size)
    for name, dim in dictionary.feature_dims.items():
        tensor = getattr(dictionary, name)
        tensor.data = tensor.data.narrow(dim, keep.start, keep.stop - keep.start).clone()
    dictionary.comm = collectives
    return dictionary


@torch.no_grad()
def gather_state_dict(dictionary: Any) -> dict[str, Tensor]:
    """The whole dictionary's state dict, on every rank: shards concatenated along their features."""
    comm = dictionary.comm
    state = {k: v.detach().clone() for k, v in dictionary.state_dict().items()}
    if comm.tp_size == 1:
        return state
    for name, dim in dictionary.feature_dims.items():
        moved = state[name].movedim(dim, -1)
        state[name] = all_gather_cat(moved, comm.tp_group).movedim(-1, dim).contiguous()
    return state
