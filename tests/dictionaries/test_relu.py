"""ReLU SAE: activations, reconstruction and the decoder-norm-weighted L1 loss, by hand."""

from __future__ import annotations

import pytest
import torch

from lm_saes.dictionaries import TrainingContext
from lm_saes.dictionaries.relu import weighted_l1

# d_in = d_out = 2, d_sae = 3; decoder rows of norm 1, 2 and sqrt(2) (a ReLU SAE leaves them free).
WEIGHTS = dict(
    W_enc=[[1, 0, 1], [0, 1, -1]], b_enc=[0, -0.5, 0],
    W_dec=[[1, 0], [0, 2], [1, 1]], b_dec=[0.5, 0],
)
X = torch.tensor([[1.5, 1.0], [0.5, 2.0]])
# centred = x - b_dec             = [[1, 1], [0, 2]]
# pre = centred W_enc + b_enc     = [[1, 1, 0] + [0, -0.5, 0], [0, 2, -2] + b_enc]
PRE = [[1.0, 0.5, 0.0], [0.0, 1.5, -2.0]]
ACTS = [[1.0, 0.5, 0.0], [0.0, 1.5, 0.0]]  # ReLU
# recon = acts W_dec + b_dec      = [[1, 0] + 0.5 [0, 2], 1.5 [0, 2]] + [0.5, 0]
RECON = [[1.5, 1.0], [0.5, 3.0]]


def test_forward_by_hand(make):
    d = make("relu", 3, 2, **WEIGHTS)
    out = d(X)
    assert torch.allclose(out.pre, torch.tensor(PRE))
    assert torch.allclose(out.acts, torch.tensor(ACTS))
    assert torch.allclose(d.encode(X), torch.tensor(ACTS))
    assert torch.allclose(out.recon, torch.tensor(RECON))


def test_loss_by_hand(make):
    d = make("relu", 3, 2, l1_coefficient=0.1, **WEIGHTS)
    out = d.loss(X, X, TrainingContext(sparsity_scale=0.5, dead_mask=None))
    # error = recon - x = [[0, 0], [0, 1]]           -> mse = (0 + 1) / 2 = 0.5
    # l1 = mean(1*1 + 0.5*2, 1.5*2) = mean(2, 3)      = 2.5
    # l0 = mean(2, 1)                                 = 1.5
    # loss = 0.5 + 0.1 * 0.5 * 2.5                    = 0.625
    assert out.terms["mse"].item() == pytest.approx(0.5)
    assert out.terms["l1"].item() == pytest.approx(2.5)
    assert out.terms["l0"].item() == pytest.approx(1.5)
    assert out.loss.item() == pytest.approx(0.625)
    assert torch.equal(out.fired, (torch.tensor(ACTS) != 0).any(0))


def test_weighted_l1_gradient_on_a_decoder_row():
    # d/dW_dec,i of sum_b acts_bi ||W_dec,i|| / B = (sum_b acts_bi / B) W_dec,i / ||W_dec,i||
    acts = torch.tensor([[2.0, 0.0], [4.0, 1.0]])
    W_dec = torch.tensor([[3.0, 4.0], [0.0, 2.0]], requires_grad=True)
    weighted_l1(acts, W_dec).backward()
    # row 0: 3 * [0.6, 0.8] = [1.8, 2.4]; row 1: 0.5 * [0, 1] = [0, 0.5]
    assert torch.allclose(W_dec.grad, torch.tensor([[1.8, 2.4], [0.0, 0.5]]))
