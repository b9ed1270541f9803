"""ReLU SAE with a decoder-norm-weighted L1 penalty (Anthropic, "Circuits Updates – April 2024").

    acts = ReLU(pre)
    loss = MSE + l1_coefficient * sparsity_scale * mean_batch sum_i acts_i ||W_dec,i||_2

Weighting each activation by its decoder row's norm makes the penalty invariant to trading
encoder scale for decoder scale, so the decoder rows are left free (no unit-norm constraint).
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from lm_saes.config import ReLUConfig
from lm_saes.dictionaries.base import (
    Dictionary, LossOutput, Stack, TrainingContext, fired_features, mean_l0, reconstruction_mse, stacked_bias,
    stacked_decode, stacked_pre_acts,
)
from lm_saes.dictionaries.parallel import SINGLE_DEVICE, Collectives


def weighted_l1(
    acts: Float[Tensor, "... batch d_sae"], W_dec: Float[Tensor, "... d_sae d_out"],
    comm: Collectives = SINGLE_DEVICE,
) -> Float[Tensor, "..."]:
    """sum_i acts_i ||W_dec,i||_2 (over every feature shard), averaged over the batch."""
    return comm.reduce((acts * W_dec.norm(dim=-1).unsqueeze(-2)).sum(-1)).mean(-1)


class ReLUDictionary(Dictionary):
    kind = "relu"
    unit_norm_decoder = False
    cfg: ReLUConfig

    @torch.no_grad()
    def scale_start(self, c: float) -> None:
        """Anthropic's start (April 2024 update): small decoder rows with the encoder their
        transpose. Both shrink by sqrt(c), so the reconstruction shrinks by c."""
        root = c**0.5
        for p in (self.W_enc, self.b_enc, self.W_dec):
            p.mul_(root)

    def activate(self, pre: Float[Tensor, "batch d_sae"]) -> Float[Tensor, "batch d_sae"]:
        return torch.relu(pre)

    @classmethod
    def stacked_loss(
        cls, st: Stack, x: Float[Tensor, "M batch d_in"], target: Float[Tensor, "M batch d_out"],
        ctxs: list[TrainingContext],
    ) -> LossOutput:
        acts = torch.relu(stacked_pre_acts(st, x, stacked_bias(st)))  # [M, batch, d_sae]
        recon = stacked_decode(st, acts)
        mse = reconstruction_mse(recon, target)  # [M]
        l1 = weighted_l1(acts, st.tensors["W_dec"], st.comm)
        weight = st.per_member([m.cfg.l1_coefficient * c.sparsity_scale for m, c in zip(st.members, ctxs)], mse)
        terms = {"mse": mse.detach(), "l1": l1.detach(), "l0": mean_l0(acts.detach(), st.comm)}
        return LossOutput(mse + weight * l1, terms, fired_features(acts))
