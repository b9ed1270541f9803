"""BatchTopK SAE (Bussmann et al. 2024, "BatchTopK Sparse Autoencoders").

While training, the k x batch largest pre-activations of the whole batch are kept (ReLU'd), so
a token may use more or fewer than k features. At inference a single threshold replaces the
batch: acts = ReLU(pre) * 1{pre > threshold}, where the threshold is an EMA of the smallest
positive activation kept in each training batch. It starts unset (-1, i.e. a plain ReLU): the
first batch sets it, later ones move it by threshold_momentum. The loss is TopK's (MSE + AuxK).
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from lm_saes.config import BatchTopKConfig
from lm_saes.dictionaries.base import LossOutput, TrainingContext
from lm_saes.dictionaries.topk import TopKDictionary, topk_activation

UNSET_THRESHOLD = -1.0


def batch_topk_activation(pre: Float[Tensor, "batch d_sae"], k: int) -> Float[Tensor, "batch d_sae"]:
    """The k * batch largest entries of the whole batch, ReLU'd, kept where they are; zeros elsewhere."""
    return topk_activation(pre.reshape(1, -1), k * pre.shape[0]).reshape(pre.shape)


def threshold_activation(
    pre: Float[Tensor, "batch d_sae"], threshold: Float[Tensor, ""]
) -> Float[Tensor, "batch d_sae"]:
    return torch.relu(pre) * (pre > threshold)


def updated_threshold(
    threshold: Float[Tensor, ""], acts: Float[Tensor, "batch d_sae"], momentum: float
) -> Float[Tensor, ""]:
    """EMA of the smallest positive activation; the first batch sets it; a batch with none keeps it."""
    fired = acts > 0
    smallest = torch.where(fired, acts, float("inf")).min()
    ema = momentum * threshold + (1 - momentum) * smallest
    new = torch.where(threshold < 0, smallest, ema)
    return torch.where(fired.any(), new, threshold)


class BatchTopKDictionary(TopKDictionary):
    kind = "batchtopk"
    cfg: BatchTopKConfig

    def __init__(self, cfg: BatchTopKConfig, d_in: int, d_out: int, transcoder: bool = False) -> None:
        super().__init__(cfg, d_in, d_out, transcoder)
        self.register_buffer("threshold", torch.tensor(UNSET_THRESHOLD))

    def activate(self, pre: Float[Tensor, "batch d_sae"]) -> Float[Tensor, "batch d_sae"]:
        if self.training:
            return batch_topk_activation(pre, self.cfg.k)
        return threshold_activation(pre, self.threshold)

    def loss(
        self, x: Float[Tensor, "batch d_in"], target: Float[Tensor, "batch d_out"], ctx: TrainingContext
    ) -> LossOutput:
        out = super().loss(x, target, ctx)
        if self.training:
            momentum = self.cfg.threshold_momentum
            self.threshold.copy_(updated_threshold(self.threshold, out.acts, momentum))
        return out
