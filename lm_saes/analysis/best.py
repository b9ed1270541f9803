"""Keep, for each of many groups at once, the k items with the smallest keys seen in a stream.

Top activating contexts are one use (a group per feature, key = -activation); band samples are
the other (a group per (feature, band), key = a random priority). Every item carries its arrival
index (its context's place in the stream); among equal keys the earlier item wins, so the result
depends on the stream's order only, never on how it was cut into batches.

Items stay in the slot where they entered: an update writes only the slots of the items that
enter (and so evicts), never moves held ones; ``sorted_payload`` orders the slots at the end.
An update sorts only the candidates that beat their group's current worst key, and compares
each with its group's k held keys, so once the groups fill, a batch costs little beyond a filter.

Memory: ``n_groups * k`` keys and arrivals plus the payload of each kept item, whatever the
stream's length.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from jaxtyping import Float, Int
from torch import Tensor

PayloadFn = Callable[[Int[Tensor, "m"]], dict[str, Tensor]]  # candidate indices -> payload rows
PayloadSpec = dict[str, tuple[tuple[int, ...], torch.dtype, float]]  # name -> (item shape, dtype, fill)


class GroupedBest:
    """``k`` best (smallest-key) items per group, each with named payload tensors.

    Empty slots have key +inf and the payload's fill value.
    """

    def __init__(self, n_groups: int, k: int, payload: PayloadSpec, device: torch.device | str = "cpu") -> None:
        self.n_groups, self.k = n_groups, k
        self.keys = torch.full((n_groups, k), float("inf"), dtype=torch.float64, device=device)
        self.arrival = torch.full((n_groups, k), -1, dtype=torch.int64, device=device)
        self.payload = {
            name: torch.full((n_groups, k, *shape), fill, dtype=dtype, device=device)
            for name, (shape, dtype, fill) in payload.items()
        }

    def worst(self) -> Float[Tensor, "n_groups"]:
        """Each group's largest held key: a candidate must be smaller to enter (+inf: not full)."""
        if self.k == 0:
            return torch.full((self.n_groups,), float("-inf"), dtype=torch.float64, device=self.keys.device)
        return self.keys.max(dim=1).values

    def counts(self) -> Int[Tensor, "n_groups"]:
        """Items held per group."""
        return torch.isfinite(self.keys).sum(1)

    def offer(
        self, groups: Int[Tensor, "m"], keys: Float[Tensor, "m"], arrival: Int[Tensor, "m"], payload_fn: PayloadFn
    ) -> None:
        """Offer m candidates, each later (``arrival``) than any item held.

        ``payload_fn(indices)`` builds the payload of the candidates at ``indices`` (into the m
        offered); it is called once, for the candidates that enter, so a costly payload (a
        window of activations) is built only for them.

        A candidate's final rank in its group is the number of held items at least as good (a
        held item wins a tie: it came earlier) plus the number of better candidates; it enters
        when that rank is below k. A group that takes e candidates gives up its e worst slots,
        empty ones first; held items are never moved.
        """
        keys = keys.to(torch.float64)
        candidates = (keys < self.worst()[groups]).nonzero().squeeze(1)  # [c] indices into the m
        if len(candidates) == 0:
            return
        order = _lexsort(groups[candidates], keys[candidates], arrival[candidates])
        candidates = candidates[order]  # by (group, key, arrival)
        groups, keys, arrival = groups[candidates], keys[candidates], arrival[candidates]
        held_better = (self.keys[groups] <= keys[:, None]).sum(1)  # [c]
        enters = held_better + _rank_in_run(groups) < self.k
        candidates, groups, keys, arrival = candidates[enters], groups[enters], keys[enters], arrival[enters]

        touched = torch.unique_consecutive(groups)  # [t], sorted
        # Each touched group's slots from worst to best: empty (+inf) first, then by (key, arrival) descending.
        by_arrival = torch.sort(self.arrival[touched], dim=1, descending=True, stable=True).indices  # [t, k]
        by_key = torch.sort(self.keys[touched].gather(1, by_arrival), dim=1, descending=True, stable=True).indices
        worst_first = by_arrival.gather(1, by_key)  # [t, k]
        slots = worst_first[torch.searchsorted(touched, groups), _rank_in_run(groups)]  # [c'], e <= k per group

        self.keys[groups, slots] = keys
        self.arrival[groups, slots] = arrival
        new_rows = payload_fn(candidates)
        for name, stored in self.payload.items():
            stored[groups, slots] = new_rows[name].to(stored.dtype)

    def sorted_payload(self) -> dict[str, Tensor]:
        """Every payload with each group's slots in (key, arrival) order, empty slots last."""
        if self.k == 0:
            return dict(self.payload)
        order = torch.sort(self.arrival, dim=1, stable=True).indices
        order = order.gather(1, torch.sort(self.keys.gather(1, order), dim=1, stable=True).indices)  # [groups, k]
        out = {}
        for name, stored in self.payload.items():
            index = order.view(*order.shape, *([1] * (stored.dim() - 2))).expand_as(stored)
            out[name] = stored.gather(1, index)
        return out


def _rank_in_run(sorted_ids: Int[Tensor, "n"]) -> Int[Tensor, "n"]:
    """Each element's place within its run of equal ids (``sorted_ids`` ascending)."""
    return torch.arange(len(sorted_ids), device=sorted_ids.device) - torch.searchsorted(sorted_ids, sorted_ids)


def _lexsort(rows: Tensor, keys: Tensor, arrival: Tensor) -> Int[Tensor, "n"]:
    """The permutation sorting by (rows, keys, arrival)."""
    order = torch.sort(arrival, stable=True).indices
    order = order[torch.sort(keys[order], stable=True).indices]
    return order[torch.sort(rows[order], stable=True).indices]
