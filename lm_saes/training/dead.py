"""Dead-feature tracking: tokens since each feature last fired."""

from __future__ import annotations

import torch
from jaxtyping import Bool
from torch import Tensor

from lm_saes.dictionaries.parallel import SINGLE_DEVICE, Collectives


class DeadFeatureTracker:
    """Counts, per feature, the tokens seen since it last fired; dead after ``dead_after`` tokens.

    Distributed, it tracks this rank's feature shard over the whole batch (all data ranks)."""

    def __init__(
        self, d_sae: int, dead_after: int, device: torch.device | str = "cpu", comm: Collectives = SINGLE_DEVICE
    ) -> None:
        self.dead_after, self.comm = dead_after, comm
        self.tokens_since_fired = torch.zeros(d_sae, dtype=torch.long, device=device)

    @torch.no_grad()
    def update(self, fired: Bool[Tensor, "d_sae"], n_tokens: int) -> None:
        """After a batch of ``n_tokens`` (this rank's) in which the features ``fired`` were active."""
        fired = self.comm.batch_any(fired)
        self.tokens_since_fired += n_tokens * self.comm.dp_size
        self.tokens_since_fired.masked_fill_(fired, 0)

    def dead_mask(self) -> Bool[Tensor, "d_sae"]:
        return self.tokens_since_fired >= self.dead_after

    def dead_fraction(self) -> float:
        """Over the whole dictionary (every feature shard)."""
        n_dead = self.comm.feature_sum(self.dead_mask().sum())
        return float(n_dead) / (len(self.tokens_since_fired) * self.comm.tp_size)

    def state_dict(self) -> dict[str, Tensor]:
        return {"tokens_since_fired": self.tokens_since_fired.clone()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.tokens_since_fired.copy_(state["tokens_since_fired"])
