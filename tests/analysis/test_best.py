"""GroupedBest against sorting the stream so far, after every batch, with many ties."""

from __future__ import annotations

import pytest
import torch

from lm_saes.analysis.best import GroupedBest

N_GROUPS, K = 5, 3


def stream(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    groups = torch.randint(0, N_GROUPS - 1, (n,), generator=g)  # the last group stays empty
    keys = torch.randint(0, 6, (n,), generator=g).double()  # few distinct keys: many ties
    return groups, keys


@pytest.mark.parametrize("batch", [1, 3, 16, 1000])
def test_keeps_the_k_smallest_keys_per_group_earlier_first_on_ties(batch):
    groups, keys = stream(300, seed=batch)
    best = GroupedBest(N_GROUPS, K, {"arrival": ((), torch.int64, -1), "pair": ((2,), torch.float32, 0.0)})
    seen: list[list[tuple[float, int]]] = [[] for _ in range(N_GROUPS)]  # (key, arrival) per group
    built = 0
    for start in range(0, len(groups), batch):
        g, key = groups[start : start + batch], keys[start : start + batch]
        arrival = torch.arange(start, start + len(g))

        def payload(i, arrival=arrival):
            nonlocal built
            built += len(i)
            return {"arrival": arrival[i], "pair": torch.stack([arrival[i], -arrival[i]], 1).float()}

        best.offer(g, key, arrival, payload)
        for group, k, a in zip(g.tolist(), key.tolist(), arrival.tolist()):
            seen[group].append((k, a))
        payload_now = best.sorted_payload()
        for group in range(N_GROUPS):
            expected = [a for _, a in sorted(seen[group])[:K]]
            n = len(expected)
            assert payload_now["arrival"][group].tolist() == expected + [-1] * (K - n)
            assert payload_now["pair"][group, :n, 1].tolist() == [-float(a) for a in expected]
            assert payload_now["pair"][group, n:].eq(0).all()
            assert sorted(best.keys[group].tolist()) == sorted(k for k, _ in sorted(seen[group])[:K]) + [float("inf")] * (K - n)
    assert best.counts().tolist() == [K] * (N_GROUPS - 1) + [0]
    assert built < len(groups) / 2  # payloads are built only for items that enter


def test_k_zero_holds_nothing():
    best = GroupedBest(3, 0, {"x": ((), torch.int64, -1)})
    best.offer(torch.tensor([0, 1]), torch.tensor([1.0, 2.0]), torch.tensor([0, 1]), lambda i: {"x": i})
    assert best.keys.shape == (3, 0) and best.counts().tolist() == [0, 0, 0]
