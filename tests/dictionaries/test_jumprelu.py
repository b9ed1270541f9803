"""JumpReLU SAE: the jump, the L0 loss and the straight-through threshold gradients, by hand."""

from __future__ import annotations

import math

import pytest
import torch

from lm_saes.dictionaries import Dictionary, TrainingContext
from lm_saes.dictionaries.jumprelu import jumprelu, step

THETA = [1.0, 0.5, 2.0]
PRE = torch.tensor([[1.5, 0.4, 1.9], [0.9, 0.6, 2.4]])
ACTS = torch.tensor([[1.5, 0.0, 0.0], [0.0, 0.6, 2.4]])  # pre where pre > theta
EPS = 0.5  # kernel window |pre - theta| < 0.25
# pre - theta = [[0.5, -0.1, -0.1], [-0.1, 0.1, 0.4]] -> K = [[0, 1, 1], [1, 1, 0]]
UPSTREAM = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
EYE = [[1, 0, 0], [0, 1, 0], [0, 0, 1]]


def test_jumprelu_forward_and_straight_through_gradients():
    pre, theta = PRE.clone().requires_grad_(), torch.tensor(THETA, requires_grad=True)
    acts = jumprelu(pre, theta, EPS)
    assert torch.equal(acts.detach(), ACTS)
    (acts * UPSTREAM).sum().backward()
    # d/dtheta_j = -(theta_j / eps) sum_b K_bj g_bj; theta / eps = [2, 1, 4]
    #   = [-2 * 4, -1 * (2 + 5), -4 * 3] = [-8, -7, -12]
    assert torch.allclose(theta.grad, torch.tensor([-8.0, -7.0, -12.0]))
    assert torch.equal(pre.grad, UPSTREAM * (ACTS != 0))  # passes where active


def test_step_forward_and_straight_through_gradients():
    pre, theta = PRE.clone().requires_grad_(), torch.tensor(THETA, requires_grad=True)
    h = step(pre, theta, EPS)
    assert torch.equal(h.detach(), (ACTS != 0).float())
    (h * UPSTREAM).sum().backward()
    # d/dtheta_j = -(1 / eps) sum_b K_bj g_bj = -2 [4, 2 + 5, 3]
    assert torch.allclose(theta.grad, torch.tensor([-8.0, -14.0, -6.0]))
    assert (pre.grad == 0).all()


def test_initial_threshold(make):
    d = make("jumprelu", 4, 2, initial_threshold=0.25)
    assert torch.allclose(d.log_threshold, torch.full((4,), math.log(0.25)))


def test_loss_and_threshold_gradient_by_hand(make):
    d = make("jumprelu", 3, 3, W_enc=EYE, W_dec=EYE, l0_coefficient=0.1, bandwidth=EPS, sparsity_loss="step",
             pre_act_coefficient=0.0)
    with torch.no_grad():
        d.log_threshold.copy_(torch.tensor(THETA).log())
    out = d.loss(PRE, PRE, TrainingContext(sparsity_scale=0.5, dead_mask=None))
    # pre = x, recon = acts; acts - x = [[0, -0.4, -1.9], [-0.9, 0, 0]]
    # mse = (0.16 + 3.61 + 0.81) / 2 = 2.29; l0 = (1 + 2) / 2 = 1.5; loss = 2.29 + 0.1 * 0.5 * 1.5
    assert out.terms["mse"].item() == pytest.approx(2.29)
    assert out.terms["l0"].item() == pytest.approx(1.5)
    assert out.loss.item() == pytest.approx(2.365)
    assert torch.equal(out.fired, (ACTS != 0).any(0))
    out.loss.backward()
    # mse: d/dacts = 2 (acts - x) / B = acts - x; d/dtheta = -(theta/eps) sum_b K (acts - x)
    #   = [-2 * -0.9, -1 * (-0.4 + 0), -4 * -1.9] = [1.8, 0.4, 7.6]
    # l0: 0.1 * 0.5 / B * -(1/eps) sum_b K = 0.025 * -2 [1, 2, 1] = [-0.05, -0.1, -0.05]
    # d/dlog_theta = theta * (sum) = [1, 0.5, 2] * [1.75, 0.3, 7.55] = [1.75, 0.15, 15.1]
    assert torch.allclose(d.log_threshold.grad, torch.tensor([1.75, 0.15, 15.1]), atol=1e-5)


@pytest.mark.parametrize("transcoder", [False, True])
def test_folding_keeps_pre_activations_so_thresholds_need_none(make, tmp_path, transcoder):
    torch.manual_seed(0)
    d = make("jumprelu", 6, 3, 3 if not transcoder else 2, transcoder=transcoder)
    with torch.no_grad():
        d.b_enc.normal_()
        d.b_dec.normal_()
        d.log_threshold.copy_(torch.rand(6).log())
    d.set_scales(2.5, 0.4)
    x = torch.randn(16, 3)
    loaded = Dictionary.from_pretrained(d.save(tmp_path / "jr"))
    assert torch.equal(loaded.log_threshold, d.log_threshold.detach())
    assert torch.allclose(loaded.pre_acts(x), d.pre_acts(x * 2.5), atol=1e-5)
    assert torch.allclose(loaded.encode(x), d.encode(x * 2.5), atol=1e-5)
    assert loaded.encode(x).ne(0).any() and loaded.encode(x).eq(0).any()  # some jumps taken, some not


def test_tanh_penalty_and_pre_activation_loss_by_hand(make):
    """Anthropic's January 2025 terms: lambda sum_i tanh(c |f_i| ||d_i||) and mu sum_i ReLU(theta_i - pre_i) ||d_i||."""
    W_dec = [[2, 0, 0], [0, 1, 0], [0, 0, 1]]  # decoder norms [2, 1, 1]
    d = make("jumprelu", 3, 3, W_enc=EYE, W_dec=W_dec, l0_coefficient=0.1, bandwidth=EPS, tanh_scale=0.5,
             pre_act_coefficient=0.01)
    with torch.no_grad():
        d.log_threshold.copy_(torch.tensor(THETA).log())
    out = d.loss(PRE, PRE, TrainingContext(sparsity_scale=1.0, dead_mask=None))
    # tanh(0.5 * acts * norms): acts = [[1.5, 0, 0], [0, 0.6, 2.4]] -> [tanh(1.5), 0, 0], [0, tanh(0.3), tanh(1.2)]
    tanh_l0 = (math.tanh(1.5) + math.tanh(0.3) + math.tanh(1.2)) / 2
    # ReLU(theta - pre) * norms: [[0, 0.1, 0.1], [0.1 * 2, 0, 0]] -> (0.2 + 0.2) / 2
    pre_act = (0.1 + 0.1 + 0.2) / 2
    # recon = acts W_dec = [[3, 0, 0], [0, 0.6, 2.4]]; error vs x: [[1.5, -0.4, -1.9], [-0.9, 0, 0]]
    mse = (2.25 + 0.16 + 3.61 + 0.81) / 2
    assert out.terms["tanh_l0"].item() == pytest.approx(tanh_l0)
    assert out.terms["pre_act"].item() == pytest.approx(pre_act)
    assert out.terms["l0"].item() == pytest.approx(1.5)  # the count is still logged
    assert out.loss.item() == pytest.approx(mse + 0.1 * tanh_l0 + 0.01 * pre_act, rel=1e-6)
    out.loss.backward()
    # The tanh penalty reaches the encoder. Feature 0 is active on token 0 only: d loss / d pre there is
    # 2 (recon - x) . d_0 / B + 0.1 * 0.5 * 2 sech^2(1.5) / B. On token 1 (pre 0.9 < theta 1) the
    # pre-activation loss pulls it up: -0.01 * 2 / B. W_enc[0, 0] collects x_b0 times these.
    on_token_0 = (2 * 1.5 * 2) / 2 + 0.1 * 0.5 * 2 * (1 - math.tanh(1.5) ** 2) / 2
    on_token_1 = -0.01 * 2 / 2
    expected = on_token_0 * PRE[0, 0].item() + on_token_1 * PRE[1, 0].item()
    assert d.W_enc.grad[0, 0].item() == pytest.approx(expected, rel=1e-5)
