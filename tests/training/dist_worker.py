"""A torchrun worker for test_distributed.py: trains every variant on this rank's share of
fixed batches, so the result can be compared with single-process training on whole batches.

    torchrun --nproc-per-node N dist_worker.py OUT_ROOT TENSOR_PARALLEL
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from lm_saes.config import TrainConfig
from lm_saes.training.train import train

D, BATCH, STEPS = 16, 64, 12
VARIANTS = {
    "topk": {"kind": "topk", "d_sae": 32, "k": 4, "aux_k": 8},
    "batchtopk": {"kind": "batchtopk", "d_sae": 32, "k": 4, "aux_k": 8},
    "relu": {"kind": "relu", "d_sae": 32, "l1_coefficient": 0.5},
    "jumprelu": {"kind": "jumprelu", "d_sae": 32, "l0_coefficient": 0.05, "bandwidth": 0.1},  # thresholds fitted
}


def whole_batches() -> list[torch.Tensor]:
    """Sparse non-negative combinations of 48 random directions, plus an offset: [BATCH, D] each."""
    g = torch.Generator().manual_seed(0)
    directions = torch.randn(48, D, generator=g)
    batches = []
    for _ in range(STEPS):
        codes = torch.rand(BATCH, 48, generator=g) * (torch.rand(BATCH, 48, generator=g) < 0.1)
        batches.append(codes @ directions + 0.5)
    return batches


def config(variant: str, output_dir: Path, tensor_parallel: int = 1) -> TrainConfig:
    return TrainConfig.model_validate(dict(
        dictionary=VARIANTS[variant], output_dir=output_dir, total_tokens=BATCH * STEPS, batch_size=BATCH,
        lr=1e-2, lr_warmup_steps=2, log_every=4, checkpoint_every=0, progress=False, normalization_batches=3,
        dead_after_tokens=3 * BATCH, device="cpu", tensor_parallel=tensor_parallel,
    ))


def rank_share(batches: list[torch.Tensor], tensor_parallel: int) -> list[torch.Tensor]:
    """The rows this rank's data-parallel group reads: consecutive ranks share one data shard."""
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    data_parallel, data_rank = world // tensor_parallel, rank // tensor_parallel
    rows = BATCH // data_parallel
    return [b[data_rank * rows:(data_rank + 1) * rows] for b in batches]


if __name__ == "__main__":
    root, tensor_parallel = Path(sys.argv[1]), int(sys.argv[2])
    share = rank_share(whole_batches(), tensor_parallel)
    for variant in VARIANTS:
        train(config(variant, root / variant, tensor_parallel), batches=share)
