"""Evaluation of a sparse dictionary: reconstruction and sparsity metrics, and spliced-in loss."""

from lm_saes.evaluation.metrics import (
    DensityHistogram,
    FeatureFiring,
    ReconstructionTotals,
    ce_loss_recovered,
    explained_variance,
    kl_divergence,
    l0,
    l1,
    mse,
    mse_per_token,
    next_token_ce,
    predicted_positions,
    shrinkage,
)
from lm_saes.evaluation.splice import SplicedLosses, reconstruct, splice_hooks, spliced_losses

__all__ = [
    "DensityHistogram", "FeatureFiring", "ReconstructionTotals", "SplicedLosses", "ce_loss_recovered", "explained_variance",
    "kl_divergence", "l0", "l1", "mse", "mse_per_token", "next_token_ce", "predicted_positions",
    "reconstruct", "shrinkage", "splice_hooks", "spliced_losses",
]
