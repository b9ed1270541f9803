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
from lm_saes.dictionaries.base import LossOutput, TrainingContext, fired_features, mean_l0
from lm_saes.dictionaries.parallel import SINGLE_DEVICE, Collectives
from lm_saes.dictionaries.topk import TopKDictionary

UNSET_THRESHOLD = -1.0


def batch_topk_activation(
    pre: Float[Tensor, "batch d_sae"], k: int, comm: Collectives = SINGLE_DEVICE
) -> Float[Tensor, "batch d_sae"]:
    """The k * batch largest entries of the whole batch, ReLU'd, kept where they are; zeros elsewhere.

    Distributed, "the whole batch" is every rank's rows and feature shards: each rank offers its
    own top k * batch and keeps those at or above the k * batch-th largest of all offers.
    """
    n = k * pre.shape[0] * comm.dp_size  # k times the global batch
    flat = pre.reshape(1, -1)  # [1, batch * d_sae]
    values, indices = flat.topk(min(n, flat.shape[-1]), dim=-1)
    if comm.distributed:
        kth = comm.kth_largest(values, n, over="all")
        values = torch.where(values >= kth, values, torch.zeros_like(values))
    return torch.zeros_like(flat).scatter(-1, indices, torch.relu(values)).reshape(pre.shape)


def threshold_activation(
    pre: Float[Tensor, "batch d_sae"], threshold: Float[Tensor, ""]
) -> Float[Tensor, "batch d_sae"]:
    return torch.relu(pre) * (pre > threshold)


def updated_threshold(
    threshold: Float[Tensor, ""], acts: Float[Tensor, "batch d_sae"], momentum: float,
    comm: Collectives = SINGLE_DEVICE,
) -> Float[Tensor, ""]:
    """EMA of the smallest positive activation (over every rank); the first batch sets it; a batch
    with none keeps it."""
    fired = acts > 0
    smallest = comm.all_min(torch.where(fired, acts, float("inf")).min())
    ema = momentum * threshold + (1 - momentum) * smallest
    new = torch.where(threshold < 0, smallest, ema)
    return torch.where(comm.all_any(fired.any()), new, threshold)


class BatchTopKDictionary(TopKDictionary):
    kind = "batchtopk"
    cfg: BatchTopKConfig
    sparse_decode = False  # a token may keep more than k features: the dense decoder
    # False: ``loss`` leaves the inference threshold alone, so it has no side effect (and torch.func
    # can transform it, as the LLC's sampler does); training keeps it True.
    update_threshold = True

    def __init__(self, cfg: BatchTopKConfig, d_in: int, d_out: int, transcoder: bool = False) -> None:
        super().__init__(cfg, d_in, d_out, transcoder)
        self.register_buffer("threshold", torch.tensor(UNSET_THRESHOLD))

    def activate(self, pre: Float[Tensor, "batch d_sae"]) -> Float[Tensor, "batch d_sae"]:
        if self.training:
            return batch_topk_activation(pre, self.cfg.k, self.comm)
        return threshold_activation(pre, self.threshold)

    def loss(
        self, x: Float[Tensor, "batch d_in"], target: Float[Tensor, "batch d_out"], ctx: TrainingContext
    ) -> LossOutput:
        recon, acts, pre = self(x)
        if self.training and self.update_threshold:
            momentum = self.cfg.threshold_momentum
            self.threshold.copy_(updated_threshold(self.threshold, acts.detach(), momentum, self.comm))
        return self.topk_loss(pre, recon, target, ctx, fired_features(acts), mean_l0(acts.detach(), self.comm))
