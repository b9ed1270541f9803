"""Keep, for each of many groups at once, the k items with the smallest keys seen in a stream.

Top activating contexts are one use (a group per feature, key = -activation); band samples are
the other (a group per (feature, band), key = a random priority). Every item carries its arrival
index (its context's place in the stream); among equal keys the earlier item wins, so the result
depends on the stream's order only, never on how it was cut into batches.

Items stay in the slot where they entered: an update writes only the slots of the items that
enter (and so evicts), never moves held ones; ``sorted_payload`` orders the slots at the end.
An update sorts only the candidates that beat their group's current worst key together with the
items of the groups they touch, so once the groups fill, a batch costs little beyond a filter.

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
        """
        keys = keys.to(torch.float64)
        candidates = (keys < self.worst()[groups]).nonzero().squeeze(1)  # [c] indices into the m
        if len(candidates) == 0:
            return
        groups, keys, arrival = groups[candidates], keys[candidates], arrival[candidates]
        touched = torch.unique(groups)  # [t], sorted
        held_keys = self.keys[touched]  # [t, k]
        held = torch.isfinite(held_keys)
        held_rows, held_slots = held.nonzero(as_tuple=True)
        n_held = len(held_rows)
        # Contenders: the held items of touched groups, then the candidates.
        all_rows = torch.cat([held_rows, torch.searchsorted(touched, groups)])
        all_keys = torch.cat([held_keys[held_rows, held_slots], keys])
        all_arrival = torch.cat([self.arrival[touched[held_rows], held_slots], arrival])
        order = _lexsort(all_rows, all_keys, all_arrival)
        sorted_rows = all_rows[order]
        rank = torch.arange(len(order), device=order.device) - torch.searchsorted(sorted_rows, sorted_rows)
        kept = order[rank < self.k]  # indices into the contenders, group-major

        # Slots freed by evicted items and empty slots take the entering candidates, in order.
        free = ~held
        is_kept = torch.zeros(len(order), dtype=torch.bool, device=order.device)
        is_kept[kept] = True
        evicted = ~is_kept[:n_held]
        free[held_rows[evicted], held_slots[evicted]] = True
        entering = kept[kept >= n_held]  # group-major, best first within a group
        rows = all_rows[entering]
        nth = torch.arange(len(rows), device=rows.device) - torch.searchsorted(rows, rows)
        free_rows, free_slots = free.nonzero(as_tuple=True)
        nth_free = torch.arange(len(free_rows), device=rows.device) - torch.searchsorted(free_rows, free_rows)
        slot_of = torch.full_like(held_keys, -1, dtype=torch.int64)
        slot_of[free_rows, nth_free] = free_slots
        slots, group_of = slot_of[rows, nth], touched[rows]

        gone = touched[held_rows[evicted]], held_slots[evicted]
        self.keys[gone] = float("inf")
        self.arrival[gone] = -1
        self.keys[group_of, slots] = all_keys[entering]
        self.arrival[group_of, slots] = all_arrival[entering]
        new_rows = payload_fn(candidates[entering - n_held])
        for name, stored in self.payload.items():
            stored[group_of, slots] = new_rows[name].to(stored.dtype)

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


def _lexsort(rows: Tensor, keys: Tensor, arrival: Tensor) -> Int[Tensor, "n"]:
    """The permutation sorting by (rows, keys, arrival)."""
    order = torch.sort(arrival, stable=True).indices
    order = order[torch.sort(keys[order], stable=True).indices]
    return order[torch.sort(rows[order], stable=True).indices]
