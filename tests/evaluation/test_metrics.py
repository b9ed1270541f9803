"""Every metric against a hand computation on a tensor small enough to check on paper."""

import math

import pytest
import torch

from lm_saes.evaluation import (
    FeatureFiring,
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

# Two tokens, two features.
TARGET = torch.tensor([[1.0, 0.0], [3.0, 2.0]])
RECON = torch.tensor([[1.0, 1.0], [2.0, 2.0]])


def test_mse_conventions():
    # recon - target = [[0, 1], [-1, 0]], squared [[0, 1], [1, 0]].
    # Per token, summed over d: [1, 1] -> mean 1.  Over all 4 elements: 2 / 4 = 0.5 (= 1 / d).
    assert mse_per_token(RECON, TARGET).item() == pytest.approx(1.0)
    assert mse(RECON, TARGET).item() == pytest.approx(0.5)
    assert mse(RECON, TARGET).item() == pytest.approx(torch.nn.functional.mse_loss(RECON, TARGET).item())


def test_explained_variance():
    # Per-dimension mean of the target over tokens: [(1+3)/2, (0+2)/2] = [2, 1].
    # Deviations [[-1, -1], [1, 1]] -> total variance 4.  Residual (as above) 1 + 1 = 2.
    # EV = 1 - 2 / 4 = 0.5.
    assert explained_variance(RECON, TARGET).item() == pytest.approx(0.5)
    assert explained_variance(TARGET, TARGET).item() == pytest.approx(1.0)  # perfect reconstruction
    mean = TARGET.mean(0).expand_as(TARGET)  # [[2, 1], [2, 1]]: residual = total = 4
    assert explained_variance(mean, TARGET).item() == pytest.approx(0.0)
    # Leading dims are all tokens: [1, 2, 2] gives the same number.
    assert explained_variance(RECON[None], TARGET[None]).item() == pytest.approx(0.5)


def test_l0_and_l1():
    acts = torch.tensor([[0.0, 2.0, -1.0], [0.0, 0.0, 3.0]])
    # Nonzero per token: [2, 1] -> L0 = 1.5.  Sum |acts| per token: [2 + 1, 3] = [3, 3] -> L1 = 3.
    assert l0(acts).item() == pytest.approx(1.5)
    assert l1(acts).item() == pytest.approx(3.0)


def test_shrinkage_is_the_mean_of_per_token_norm_ratios():
    target = torch.tensor([[3.0, 4.0], [0.0, 2.0], [0.0, 0.0]])
    recon = torch.tensor([[0.0, 2.5], [0.0, 3.0], [1.0, 1.0]])
    # ||target|| = [5, 2, 0], ||recon|| = [2.5, 3, sqrt 2]; the third token has no ratio.
    # Ratios [0.5, 1.5] -> 1.0 (the ratio of mean norms, 2.75 / 3.5 = 0.786, is not the definition).
    assert shrinkage(recon, target).item() == pytest.approx(1.0)
    assert shrinkage(0.5 * target, target).item() == pytest.approx(0.5)


def test_metrics_compute_in_float32():
    assert explained_variance(RECON.bfloat16(), TARGET.bfloat16()).dtype == torch.float32
    assert mse_per_token(RECON.half(), TARGET.half()).item() == pytest.approx(1.0)


def firing_window() -> FeatureFiring:
    """Six features over four tokens, fed as a [2, 6] batch then a [1, 2, 6] batch."""
    firing = FeatureFiring(d_sae=6)
    firing.update(torch.tensor([
        [1.0, 0.0, 0.0, 0.0, 0.1, 1.0],   # token a: f0 f4 f5
        [2.0, 0.0, 0.5, 0.0, 0.0, -1.0],  # token b: f0 f2 f5 (negative counts as firing)
    ]))
    firing.update(torch.tensor([[
        [0.0, 0.0, 1.0, 0.0, 0.0, 1.0],   # token c: f2 f5
        [3.0, 0.0, 0.0, 0.0, 0.0, 2.0],   # token d: f0 f5
    ]]))
    return firing


def test_feature_firing_density_and_dead_fraction():
    firing = firing_window()
    # Counts: f0 {a,b,d} 3, f1 0, f2 {b,c} 2, f3 0, f4 {a} 1, f5 all 4; over 4 tokens.
    assert firing.n_tokens == 4
    assert firing.counts.tolist() == [3, 0, 2, 0, 1, 4]
    assert firing.density().tolist() == [0.75, 0.0, 0.5, 0.0, 0.25, 1.0]
    # f1 and f3 never fired: 2 of 6 dead.
    assert firing.dead_fraction() == pytest.approx(1 / 3)
    assert firing.alive_fraction() == pytest.approx(2 / 3)


def test_density_histogram_on_log10_density():
    hist = firing_window().density_histogram(bins=3)
    # Range [log10(1/4), 0] = [-0.602, 0], bins of width 0.2007: edges -0.602, -0.401, -0.201, 0.
    # log10 density of the alive: f4 -0.602 (the floor) -> bin 0; f2 -0.301 -> bin 1;
    # f0 -0.125 -> bin 2; f5 0 (the right edge) -> bin 2.  f1 and f3 are dead, counted apart.
    assert hist.counts.tolist() == [1, 1, 2]
    torch.testing.assert_close(
        hist.edges, torch.tensor([-0.60206, -0.40137, -0.20069, 0.0], dtype=torch.float64), atol=1e-5, rtol=0
    )
    assert hist.n_dead == 2
    assert int(hist.counts.sum()) + hist.n_dead == 6


def test_density_needs_tokens():
    with pytest.raises(ValueError, match="no tokens"):
        FeatureFiring(d_sae=3).density()


def test_ce_loss_recovered():
    # (ce_zero - ce_spliced) / (ce_zero - ce_clean) = (6 - 2.5) / (6 - 2) = 3.5 / 4 = 0.875.
    assert ce_loss_recovered(ce_clean=2.0, ce_spliced=2.5, ce_zero=6.0) == pytest.approx(0.875)
    assert ce_loss_recovered(2.0, 2.0, 6.0) == 1.0 and ce_loss_recovered(2.0, 6.0, 6.0) == 0.0


def test_kl_divergence():
    ln3 = math.log(3)
    logits_p = torch.tensor([[0.0, 0.0], [1.0, 2.0]])
    logits_q = torch.tensor([[0.0, ln3], [1.0, 2.0]])
    # Token 1: p = [1/2, 1/2], q = [1/4, 3/4]; KL = 1/2 ln(2) + 1/2 ln(2/3) = 1/2 ln(4/3).
    # Token 2: p = q, KL = 0.  Mean over the 2 tokens: 1/4 ln(4/3) = 0.0719.
    assert kl_divergence(logits_p, logits_q).item() == pytest.approx(0.25 * math.log(4 / 3))
    # KL(q || p) on token 1 = 1/4 ln(1/2) + 3/4 ln(3/2): the order matters.
    assert kl_divergence(logits_q, logits_p).item() == pytest.approx(
        (0.25 * math.log(0.5) + 0.75 * math.log(1.5)) / 2)
    assert kl_divergence(logits_p, logits_p).item() == pytest.approx(0.0, abs=1e-7)


def test_next_token_ce_and_mask():
    tokens = torch.tensor([[0, 1, 1]], dtype=torch.int32)
    logits = torch.tensor([[[0.0, 0.0], [0.0, math.log(3)], [5.0, -5.0]]])
    # Position 0 predicts token 1 with p = 1/2: ln 2.  Position 1 predicts token 1 with p = 3/4:
    # ln(4/3).  The last position predicts nothing.  Mean: (ln 2 + ln 4/3) / 2.
    assert next_token_ce(logits, tokens).item() == pytest.approx((math.log(2) + math.log(4 / 3)) / 2)
    # Masking the last token (padding) drops the prediction of it, at position 1: ln 2 alone.
    mask = torch.tensor([[True, True, False]])
    assert predicted_positions(tokens, mask).tolist() == [[True, False]]
    assert next_token_ce(logits, tokens, mask).item() == pytest.approx(math.log(2))


def test_streamed_totals_equal_the_whole_window_metrics():
    from lm_saes.evaluation.metrics import ReconstructionTotals

    g = torch.Generator().manual_seed(0)
    target = torch.randn(50, 6, generator=g) + 3.0  # an offset mean: the variance is about it
    target[7] = 0.0  # no norm ratio for a zero target
    recon = target * 0.8 + 0.1 * torch.randn(50, 6, generator=g)
    acts = torch.relu(torch.randn(50, 9, generator=g))
    totals = ReconstructionTotals()
    for rows in torch.arange(50).split(13):  # uneven batches
        totals.update(recon[rows], target[rows], acts[rows])
    got = totals.results()
    assert totals.n_tokens == 50
    assert got["mse"] == pytest.approx(float(mse_per_token(recon, target)), rel=1e-6)
    assert got["explained_variance"] == pytest.approx(float(explained_variance(recon, target)), rel=1e-6)
    assert got["shrinkage"] == pytest.approx(float(shrinkage(recon, target)), rel=1e-6)
    assert got["l0"] == pytest.approx(float(l0(acts)))
    assert got["l1"] == pytest.approx(float(l1(acts)), rel=1e-6)
    with pytest.raises(ValueError, match="no tokens"):
        ReconstructionTotals().results()
