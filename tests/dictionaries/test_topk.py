"""TopK SAE: exactly k features per token, and the AuxK loss on dead features, by hand."""

from __future__ import annotations

import pytest
import torch

from lm_saes.dictionaries import TrainingContext
from lm_saes.dictionaries.topk import auxk_loss, topk_activation

# d_in = d_out = 2, d_sae = 3, unit decoder rows; k = 1.
WEIGHTS = dict(W_enc=[[1, 0, 0.5], [0, 1, 0.5]], W_dec=[[1, 0], [0, 1], [0.6, 0.8]])
X = torch.tensor([[2.0, 1.0], [1.0, 3.0]])
# pre = x W_enc = [[2, 1, 1.5], [1, 3, 2]]; top-1: feature 0 (2) and feature 1 (3)
ACTS = [[2.0, 0.0, 0.0], [0.0, 3.0, 0.0]]
RECON = [[2.0, 0.0], [0.0, 3.0]]
DEAD = torch.tensor([False, False, True])  # feature 2 never fires


def test_topk_activation_by_hand():
    pre = torch.tensor([[3.0, -1.0, 2.0, 0.5], [-2.0, -1.0, -3.0, 0.5]])
    # token 0 keeps 3 and 2; token 1 keeps 0.5 and -1, which the ReLU zeroes
    expected = torch.tensor([[3.0, 0.0, 2.0, 0.0], [0.0, 0.0, 0.0, 0.5]])
    assert torch.equal(topk_activation(pre, 2), expected)


def test_topk_keeps_exactly_k_largest_per_token():
    pre = torch.rand(5, 8, generator=torch.Generator().manual_seed(0)) + 0.1  # all positive
    acts = topk_activation(pre, 3)
    assert ((acts != 0).sum(-1) == 3).all()
    kept = acts != 0
    assert (pre.masked_fill(~kept, float("inf")).min(-1).values > pre.masked_fill(kept, 0).max(-1).values).all()
    assert torch.equal(acts[kept], pre[kept])


def test_forward_by_hand(make):
    d = make("topk", 3, 2, k=1, **WEIGHTS)
    out = d(X)
    assert torch.allclose(out.pre, torch.tensor([[2.0, 1.0, 1.5], [1.0, 3.0, 2.0]]))
    assert torch.allclose(out.acts, torch.tensor(ACTS))
    assert torch.allclose(out.recon, torch.tensor(RECON))


def test_loss_by_hand_with_one_dead_feature(make):
    d = make("topk", 3, 2, k=1, aux_coefficient=0.5, **WEIGHTS)  # aux_k = 256 > 1 dead feature
    out = d.loss(X, X, TrainingContext(sparsity_scale=1.0, dead_mask=DEAD))
    # e = x - recon = [[0, 1], [1, 0]]                                  -> mse = (1 + 1) / 2 = 1
    # dead feature 2: pre [1.5, 2]; e_hat = [1.5 [0.6, 0.8], 2 [0.6, 0.8]] = [[0.9, 1.2], [1.2, 1.6]]
    # ||e - e_hat||^2 = [0.81 + 0.04, 0.04 + 2.56] = [0.85, 2.6]       -> mean 1.725
    # e - mean(e) = [[-0.5, 0.5], [0.5, -0.5]]                         -> variance 0.5
    # aux = 1.725 / 0.5 = 3.45; loss = 1 + 0.5 * 3.45 = 2.725
    assert out.terms["mse"].item() == pytest.approx(1.0)
    assert out.terms["aux"].item() == pytest.approx(3.45)
    assert out.terms["l0"].item() == pytest.approx(1.0)
    assert out.loss.item() == pytest.approx(2.725)


@pytest.mark.parametrize("dead_mask", [None, torch.zeros(3, dtype=torch.bool)])
def test_aux_is_zero_without_dead_features(make, dead_mask):
    d = make("topk", 3, 2, k=1, **WEIGHTS)
    out = d.loss(X, X, TrainingContext(sparsity_scale=1.0, dead_mask=dead_mask))
    assert out.terms["aux"].item() == 0.0
    assert out.loss.item() == pytest.approx(1.0)


def test_auxk_gradient_by_hand_and_only_on_dead_features(make):
    d = make("topk", 3, 2, k=1, **WEIGHTS)
    residual = X - torch.tensor(RECON)
    auxk_loss(d.pre_acts(X), residual, d.W_dec, DEAD, aux_k=4).backward()
    # d aux / d W_dec,2 = sum_b -2 a_b (e_b - a_b w) / (B var)
    #   = -(2 / (2 * 0.5)) (1.5 [-0.9, -0.2] + 2 [-0.2, -1.6]) = -2 [-1.75, -3.5] = [3.5, 7]
    assert torch.allclose(d.W_dec.grad[2], torch.tensor([3.5, 7.0]))
    assert (d.W_dec.grad[:2] == 0).all() and (d.W_enc.grad[:, :2] == 0).all()
    assert (d.W_enc.grad[:, 2] != 0).all()


def test_aux_gradient_reaches_only_dead_features_through_the_loss(make):
    """The residual is a constant: adding AuxK changes no live feature's gradient."""
    grads = []
    for dead_mask in (None, DEAD):
        d = make("topk", 3, 2, k=1, aux_coefficient=1.0, **WEIGHTS)
        d.loss(X, X, TrainingContext(1.0, dead_mask)).loss.backward()
        grads.append((d.W_enc.grad.clone(), d.W_dec.grad.clone()))
    (enc_live, dec_live), (enc_aux, dec_aux) = grads
    assert torch.equal(enc_aux[:, :2], enc_live[:, :2]) and torch.equal(dec_aux[:2], dec_live[:2])
    assert (enc_live[:, 2] == 0).all() and (enc_aux[:, 2] != 0).all()


def test_aux_k_limits_the_dead_features_used():
    pre = torch.tensor([[0.5, 1.0, 2.0, 0.0], [0.5, 3.0, 1.0, 0.0]])
    dead = torch.tensor([False, True, True, False])
    W_dec = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    e = torch.tensor([[0.0, 1.0], [1.0, 0.0]])  # variance 0.5 (as above)
    # aux_k = 1: e_hat = [2 [0, 1], 3 [1, 0]];                   errors [1, 4]  -> 2.5 / 0.5 = 5
    # aux_k = 2: e_hat = [[1, 0] + 2 [0, 1], 3 [1, 0] + [0, 1]]; errors [2, 5] -> 3.5 / 0.5 = 7
    assert auxk_loss(pre, e, W_dec, dead, aux_k=1).item() == pytest.approx(5.0)
    assert auxk_loss(pre, e, W_dec, dead, aux_k=2).item() == pytest.approx(7.0)


def test_aux_of_a_single_token_is_zero_with_a_finite_gradient():
    pre = torch.tensor([[1.0, 2.0]], requires_grad=True)
    W_dec = torch.eye(2, requires_grad=True)
    aux = auxk_loss(pre, torch.tensor([[1.0, 1.0]]), W_dec, torch.tensor([True, True]), aux_k=2)
    aux.backward()
    assert aux.item() == 0.0 and torch.isfinite(pre.grad).all() and torch.isfinite(W_dec.grad).all()


def test_the_residual_is_a_constant_target():
    pre = torch.tensor([[1.0, 2.0], [0.5, 0.0]], requires_grad=True)
    residual = torch.tensor([[2.0, 0.0], [0.0, 1.0]], requires_grad=True)
    auxk_loss(pre, residual, torch.eye(2), torch.tensor([True, False]), aux_k=1).backward()
    assert residual.grad is None and pre.grad[:, 0].ne(0).all() and (pre.grad[:, 1] == 0).all()


FAST_PATHS = [(kind, switch) for kind in ("topk", "batchtopk")
              for switch in ("sparse_backward", "sparse_decode", "auxk_sync_free")]


@pytest.mark.parametrize("transcoder", [False, True], ids=["sae", "transcoder"])
@pytest.mark.parametrize("kind, switch", FAST_PATHS, ids=[f"{k}-{s}" for k, s in FAST_PATHS])
def test_each_fast_path_equals_its_eager_twin_with_gradients(kind, switch, transcoder):
    from lm_saes.dictionaries import build_dictionary, dictionary_config

    torch.manual_seed(0)
    d_out = 12 if transcoder else 10
    fast = build_dictionary(dictionary_config({"kind": kind, "d_sae": 40, "k": 5, "aux_k": 8}), 10, d_out, transcoder)
    with torch.no_grad():
        fast.b_enc.normal_()
        fast.b_dec.normal_()
    slow = build_dictionary(fast.cfg, 10, d_out, transcoder)
    slow.load_state_dict(fast.state_dict())
    setattr(slow, switch, not getattr(fast, switch))
    x, y = torch.randn(16, 10), torch.randn(16, d_out)
    dead = torch.zeros(40, dtype=torch.bool)
    dead[::3] = True  # AuxK on: 14 dead features, more than aux_k
    outs, losses = [], []
    for dictionary in (fast, slow):
        out = dictionary.loss(x, y if transcoder else x, TrainingContext(1.0, dead))
        out.loss.backward()
        losses.append(out)
        outs.append((dictionary(x), {n: p.grad for n, p in dictionary.named_parameters()}))
    (fast_out, fast_grads), (slow_out, slow_grads) = outs
    assert torch.equal(losses[0].fired, losses[1].fired) and losses[0].fired.sum() > 5
    assert losses[0].terms["aux"] > 0
    for name in ("mse", "aux", "l0"):
        torch.testing.assert_close(losses[0].terms[name], losses[1].terms[name])
    for a, b in zip(fast_out, slow_out):
        torch.testing.assert_close(a, b)
    for name in slow_grads:
        torch.testing.assert_close(fast_grads[name], slow_grads[name])
    assert fast_grads["W_enc"].ne(0).any() and fast_grads["W_dec"].ne(0).any()


def test_a_stack_of_members_with_other_ks_selects_each_members_own_k():
    from lm_saes.dictionaries.topk import select_topk

    pre = torch.tensor([[[3.0, 1.0, 2.0, 0.5]], [[0.1, 0.4, 0.3, 0.2]]])  # [M=2, batch=1, d_sae=4]
    chosen = select_topk(pre, [1, 3])
    assert chosen.widths == [1, 3] and chosen.indices.shape == (2, 1, 3)
    assert chosen.indices[0, 0, 0] == 0 and chosen.keep[0, 0].tolist() == [True, False, False]
    assert chosen.indices[1, 0].tolist() == [1, 2, 3] and chosen.keep[1, 0].all()
