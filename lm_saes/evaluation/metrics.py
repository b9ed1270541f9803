"""Evaluation metrics of a sparse dictionary, each a small function with its standard definition.

Activation tensors are [*tokens, d]: every leading dimension indexes a token, and a mean "over
tokens" runs over all of them. Every metric is computed in float32 (or float64 for densities),
whatever dtype it is given.

Two MSE conventions are in use and both are here: ``mse`` averages the squared error over every
element (``torch.nn.functional.mse_loss``); ``mse_per_token`` sums it over the d features and
averages over tokens (the training loss), so ``mse_per_token = d * mse``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor


def _rows(x: Tensor) -> Float[Tensor, "tokens d"]:
    """[*tokens, d] as a float32 matrix with one row per token."""
    return x.reshape(-1, x.shape[-1]).float()


def mse(recon: Float[Tensor, "*tokens d"], target: Float[Tensor, "*tokens d"]) -> Float[Tensor, ""]:
    """mean_{t,i} (recon_ti - target_ti)^2: squared error averaged over every element."""
    return (_rows(recon) - _rows(target)).pow(2).mean()


def mse_per_token(recon: Float[Tensor, "*tokens d"], target: Float[Tensor, "*tokens d"]) -> Float[Tensor, ""]:
    """mean_t ||recon_t - target_t||^2: squared L2 error summed over features, averaged over tokens."""
    return (_rows(recon) - _rows(target)).pow(2).sum(-1).mean()


def explained_variance(
    recon: Float[Tensor, "*tokens d"], target: Float[Tensor, "*tokens d"]
) -> Float[Tensor, ""]:
    """1 - sum_t ||target_t - recon_t||^2 / sum_t ||target_t - mean_s target_s||^2.

    The denominator is the total variance of the target about its per-dimension mean over the
    tokens, summed over dimensions: 1 for a perfect reconstruction, 0 for predicting the mean.
    """
    recon, target = _rows(recon), _rows(target)
    residual = (target - recon).pow(2).sum()
    total = (target - target.mean(0)).pow(2).sum()
    return 1 - residual / total


def l0(acts: Float[Tensor, "*tokens d_sae"]) -> Float[Tensor, ""]:
    """mean_t #{i : acts_ti != 0}: active features per token."""
    return (_rows(acts) != 0).float().sum(-1).mean()


def l1(acts: Float[Tensor, "*tokens d_sae"]) -> Float[Tensor, ""]:
    """mean_t sum_i |acts_ti|: L1 norm of the activations per token."""
    return _rows(acts).abs().sum(-1).mean()


RECOVERED_COSINE = 0.9  # a true feature counts as recovered when some learned direction is this close


def best_cosines(learned: Float[Tensor, "m d"], true: Float[Tensor, "n d"]) -> Float[Tensor, "n"]:
    """For each row of ``true``, the largest cosine similarity with any row of ``learned``."""
    learned = F.normalize(learned.float(), dim=1)
    true = F.normalize(true.float().to(learned.device), dim=1)
    return (true @ learned.T).max(dim=1).values


def mmcs(learned: Float[Tensor, "m d"], true: Float[Tensor, "n d"]) -> float:
    """Mean max cosine similarity (Sharkey et al. 2022): over the true features, the best cosine
    with any learned direction, averaged. 1.0 means every feature was found exactly."""
    return float(best_cosines(learned, true).mean())


def dictionary_mmcs(learned: Float[Tensor, "m d"], true: Float[Tensor, "n d"]) -> float:
    """The other direction: over the learned directions (pass the live ones), the best cosine with
    any true feature, averaged. Large dictionaries with a weak sparsity penalty find a near copy of
    every true feature among many directions that are none (high ``mmcs``, low ``dictionary_mmcs``)."""
    return float(best_cosines(true, learned).mean()) if len(learned) else float("nan")


def features_recovered(learned: Float[Tensor, "m d"], true: Float[Tensor, "n d"],
                       threshold: float = RECOVERED_COSINE) -> float:
    """Fraction of the true features with a learned direction at cosine >= ``threshold``."""
    return float((best_cosines(learned, true) >= threshold).float().mean())


def shrinkage(recon: Float[Tensor, "*tokens d"], target: Float[Tensor, "*tokens d"]) -> Float[Tensor, ""]:
    """mean_t ||recon_t|| / ||target_t|| over tokens with target_t != 0 (1: no shrinkage, < 1: shrunk).

    A mean of per-token norm ratios, not a ratio of mean norms; tokens whose target is the zero
    vector have no ratio and are left out.
    """
    recon_norm, target_norm = _rows(recon).norm(dim=-1), _rows(target).norm(dim=-1)
    keep = target_norm > 0
    return (recon_norm[keep] / target_norm[keep]).mean()


class ReconstructionTotals:
    """Running float64 sums over batches that give ``mse_per_token``, ``explained_variance``,
    ``shrinkage``, ``l0`` and ``l1`` of all the tokens seen, without keeping the tokens.

    The total variance uses sum ||y||^2 - N ||mean y||^2 (in float64, so the cancellation costs
    nothing at these sizes); shrinkage averages the per-token norm ratios of nonzero targets.
    """

    def __init__(self) -> None:
        self.n_tokens = 0
        self.n_ratios = 0
        self.sq_error = self.sq_target = self.ratios = self.active = self.abs_acts = 0.0
        self.target_sum: Tensor | None = None  # [d] float64

    @torch.no_grad()
    def update(self, recon: Float[Tensor, "*tokens d"], target: Float[Tensor, "*tokens d"],
               acts: Float[Tensor, "*tokens d_sae"]) -> None:
        recon, target, acts = _rows(recon).double(), _rows(target).double(), _rows(acts)
        self.n_tokens += len(target)
        self.sq_error += float((target - recon).pow(2).sum())
        self.sq_target += float(target.pow(2).sum())
        batch_sum = target.sum(0)
        self.target_sum = batch_sum if self.target_sum is None else self.target_sum + batch_sum
        target_norm = target.norm(dim=-1)
        keep = target_norm > 0
        self.ratios += float((recon.norm(dim=-1)[keep] / target_norm[keep]).sum())
        self.n_ratios += int(keep.sum())
        self.active += float((acts != 0).sum())
        self.abs_acts += float(acts.abs().double().sum())

    def results(self) -> dict[str, float]:
        if self.n_tokens == 0:
            raise ValueError("no tokens seen yet: call update() first")
        total = self.sq_target - float(self.target_sum.pow(2).sum()) / self.n_tokens
        return {
            "mse": self.sq_error / self.n_tokens,
            "explained_variance": 1 - self.sq_error / total,
            "l0": self.active / self.n_tokens,
            "l1": self.abs_acts / self.n_tokens,
            "shrinkage": self.ratios / self.n_ratios,
        }


class DensityHistogram(NamedTuple):
    counts: Int[Tensor, "bins"]  # alive features per bin of log10 density
    edges: Float[Tensor, "bins_plus_1"]  # bin edges, from log10(1 / n_tokens) up to 0
    n_dead: int  # features that never fired (log10 density -inf), outside the histogram


class FeatureFiring:
    """Counts, per feature, the tokens it fired on (acts != 0) over a window of tokens.

    ``update`` with every batch of the window; a new window is a new accumulator.
    """

    def __init__(self, d_sae: int, device: torch.device | str = "cpu") -> None:
        self.counts = torch.zeros(d_sae, dtype=torch.long, device=device)
        self.n_tokens = 0

    def update(self, acts: Float[Tensor, "*tokens d_sae"]) -> None:
        fired = acts.reshape(-1, acts.shape[-1]) != 0
        self.counts += fired.sum(0).to(self.counts.device)
        self.n_tokens += fired.shape[0]

    def density(self) -> Float[Tensor, "d_sae"]:
        """count_i / n_tokens: the fraction of the window's tokens on which feature i fired."""
        if self.n_tokens == 0:
            raise ValueError("no tokens seen yet: call update() first")
        return self.counts.double() / self.n_tokens

    def dead_fraction(self) -> float:
        """Fraction of features that never fired in the window."""
        return float((self.density() == 0).double().mean())

    def alive(self) -> Bool[Tensor, "d_sae"]:
        """The features that fired at least once in the window."""
        return self.counts > 0

    def alive_fraction(self) -> float:
        """Fraction of features that fired at least once in the window (1 - dead_fraction)."""
        return 1 - self.dead_fraction()

    def density_histogram(self, bins: int = 20) -> DensityHistogram:
        """Histogram of log10 density of the alive features over ``bins`` equal bins.

        The range runs from the floor log10(1 / n_tokens), the smallest nonzero density a window
        of n_tokens can show, to 0 (a feature firing on every token). Dead features have no
        logarithm and are counted in ``n_dead`` instead.
        """
        density = self.density().cpu()
        alive = density[density > 0]
        floor = float(torch.log10(torch.tensor(1.0 / self.n_tokens, dtype=torch.float64)))
        log_density = torch.log10(alive).clamp(floor, 0.0)  # clamp only absorbs rounding at the ends
        counts, edges = torch.histogram(log_density, bins=bins, range=(floor, 0.0))
        return DensityHistogram(counts.long(), edges, n_dead=int((density == 0).sum()))


def predicted_positions(
    tokens: Int[Tensor, "batch ctx"], mask: Bool[Tensor, "batch ctx"] | None = None
) -> Bool[Tensor, "batch ctx_minus_1"]:
    """Positions i < ctx-1 whose next token i+1 is scored: all of them, or those with mask[i+1] true."""
    if mask is None:
        return torch.ones_like(tokens[:, 1:], dtype=torch.bool)
    return mask[:, 1:].to(dtype=torch.bool)


def next_token_ce(
    logits: Float[Tensor, "batch ctx vocab"],
    tokens: Int[Tensor, "batch ctx"],
    mask: Bool[Tensor, "batch ctx"] | None = None,
) -> Float[Tensor, ""]:
    """mean_i -log softmax(logits_i)[token_{i+1}] over the predicted positions (``predicted_positions``)."""
    keep = predicted_positions(tokens, mask).to(logits.device)
    targets = tokens[:, 1:].to(device=logits.device, dtype=torch.long)
    return F.cross_entropy(logits[:, :-1][keep].float(), targets[keep])


def kl_divergence(
    logits_p: Float[Tensor, "*tokens vocab"], logits_q: Float[Tensor, "*tokens vocab"]
) -> Float[Tensor, ""]:
    """mean_t KL(p_t || q_t) = mean_t sum_v p_tv (log p_tv - log q_tv), p = softmax(logits_p)."""
    log_p, log_q = F.log_softmax(_rows(logits_p), -1), F.log_softmax(_rows(logits_q), -1)
    return (log_p.exp() * (log_p - log_q)).sum(-1).mean()


def ce_loss_recovered(ce_clean: float, ce_spliced: float, ce_zero: float) -> float:
    """(ce_zero - ce_spliced) / (ce_zero - ce_clean): 1 if splicing costs nothing, 0 if it is as bad as
    zero ablation (the baseline: the same hook replaced by zeros)."""
    return (ce_zero - ce_spliced) / (ce_zero - ce_clean)
