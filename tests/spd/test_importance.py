"""Causal importances: the vectorised MLPs equal their per-subcomponent loop, and the hard sigmoids'
values and leaky gradients are the ones defined."""

import torch

from lm_saes.spd.importance import (
    ImportanceMLPs, causal_importance, lower_leaky_hard_sigmoid, stochastic_mask, upper_leaky_hard_sigmoid,
)


def test_the_batched_mlps_equal_the_loop_over_subcomponents_in_values_and_gradients():
    torch.manual_seed(0)
    mlps = ImportanceMLPs(C=7, hidden=[5, 3])
    h = torch.randn(4, 6, 7, requires_grad=True)  # [batch, ctx, C]
    fast, slow = mlps(h), mlps.reference_forward(h)
    torch.testing.assert_close(fast, slow)
    assert fast.shape == (4, 6, 7)
    weights = torch.randn_like(fast)
    grads_fast = torch.autograd.grad((fast * weights).sum(), [h, *mlps.parameters()])
    grads_slow = torch.autograd.grad((slow * weights).sum(), [h, *mlps.parameters()])
    for a, b in zip(grads_fast, grads_slow):
        torch.testing.assert_close(a, b)


def test_a_subcomponents_mlp_reads_only_its_own_inner_activation():
    torch.manual_seed(1)
    mlps = ImportanceMLPs(C=3, hidden=[4])
    h = torch.randn(5, 3)
    moved = h.clone()
    moved[:, 1] += 1.0
    changed = (mlps(moved) != mlps(h)).any(dim=0)
    assert changed.tolist() == [False, True, False]


def test_the_hard_sigmoids_values():
    x = torch.tensor([-2.0, 0.0, 0.25, 1.0, 3.0])
    assert lower_leaky_hard_sigmoid(x, 0.01).tolist() == [0.0, 0.0, 0.25, 1.0, 1.0]
    torch.testing.assert_close(upper_leaky_hard_sigmoid(x, 0.01), torch.tensor([0.0, 0.0, 0.25, 1.0, 1.02]))


def test_the_lower_leaky_gradient_can_only_raise_a_switched_off_importance():
    x = torch.tensor([-2.0, -2.0, 0.5, 2.0], requires_grad=True)
    upstream = torch.tensor([-1.0, 1.0, 3.0, -1.0])  # d loss / d output
    (lower_leaky_hard_sigmoid(x, 0.01) * upstream).sum().backward()
    # below 0: 0.01 x upstream when descent would raise x (upstream < 0), else 0; inside: upstream; above 1: 0
    torch.testing.assert_close(x.grad, torch.tensor([-0.01, 0.0, 3.0, 0.0]))


def test_the_upper_leaky_gradient_pushes_back_above_one():
    x = torch.tensor([-1.0, 0.5, 4.0], requires_grad=True)
    upper_leaky_hard_sigmoid(x, 0.1).sum().backward()
    torch.testing.assert_close(x.grad, torch.tensor([0.0, 1.0, 0.1]))


def test_stochastic_masks_keep_important_subcomponents_whole():
    g = torch.tensor([1.0, 0.0, 0.5])
    r = torch.tensor([0.2, 0.3, 0.4])
    torch.testing.assert_close(stochastic_mask(g, r), torch.tensor([1.0, 0.3, 0.7]))
    both = causal_importance(torch.tensor([-1.0, 2.0]), 0.01)
    assert both.lower.tolist() == [0.0, 1.0] and both.upper.tolist() == [0.0, 1.0099999904632568]
