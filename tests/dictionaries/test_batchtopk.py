"""BatchTopK SAE: k x batch features across the batch while training, a threshold at eval."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from lm_saes.dictionaries import Dictionary, TrainingContext
from lm_saes.dictionaries.base import WEIGHTS_NAME
from lm_saes.dictionaries.batchtopk import batch_topk_activation, updated_threshold
from lm_saes.dictionaries.topk import auxk_loss

EYE = [[1, 0, 0], [0, 1, 0], [0, 0, 1]]  # W_enc = W_dec = I, no biases: pre = x, recon = acts
CTX = TrainingContext(sparsity_scale=1.0, dead_mask=None)
X1 = torch.tensor([[3.0, 2.5, 0.5], [1.0, 0.2, 0.1]])  # top 2 of the batch: 3 and 2.5, both token 0
X2 = torch.tensor([[0.5, -1.0, -1.0], [0.7, -1.0, -1.0]])  # top 2: 0.7 and 0.5
X3 = torch.tensor([[-1.0, -1.0, -1.0], [-2.0, -2.0, -2.0]])  # nothing positive


def identity(make, **knobs) -> Dictionary:
    return make("batchtopk", 3, 3, W_enc=EYE, W_dec=EYE, k=1, **knobs)


def test_batch_topk_by_hand():
    # k = 1, batch 2: the 2 largest of the batch, wherever they are (token 1 gets none)
    assert torch.equal(batch_topk_activation(X1, 1), torch.tensor([[3.0, 2.5, 0.0], [0.0, 0.0, 0.0]]))


def test_batch_topk_keeps_exactly_k_times_batch():
    pre = torch.rand(6, 10, generator=torch.Generator().manual_seed(0)) + 0.1  # all positive
    acts = batch_topk_activation(pre, 3)
    kept = acts != 0
    assert kept.sum() == 18
    assert pre[kept].min() > pre[~kept].max() and torch.equal(acts[kept], pre[kept])


def test_threshold_ema_by_hand():
    unset = torch.tensor(-1.0)
    first = updated_threshold(unset, batch_topk_activation(X1, 1), 0.9)
    assert first.item() == pytest.approx(2.5)  # the first batch sets it: min kept = 2.5
    second = updated_threshold(first, batch_topk_activation(X2, 1), 0.9)
    assert second.item() == pytest.approx(2.3)  # 0.9 * 2.5 + 0.1 * 0.5
    assert updated_threshold(second, batch_topk_activation(X3, 1), 0.9) == second  # none fired


def test_training_loss_updates_the_threshold_and_eval_uses_it(make, tmp_path):
    d = identity(make, threshold_momentum=0.9)
    out = d.loss(X1, X1, CTX)
    # recon = [[3, 2.5, 0], [0, 0, 0]]; errors [0.5^2, 1 + 0.04 + 0.01] = [0.25, 1.05] -> mse 0.65
    assert out.terms["mse"].item() == pytest.approx(0.65) and out.terms["l0"].item() == pytest.approx(1.0)
    assert d.threshold.item() == pytest.approx(2.5)
    d.loss(X2, X2, CTX)
    d.loss(X3, X3, CTX)
    assert d.threshold.item() == pytest.approx(2.3)

    d.eval()
    d.loss(X1, X1, CTX)
    assert d.threshold.item() == pytest.approx(2.3)  # eval never moves it
    # eval: ReLU(pre) * (pre > 2.3), token by token (token 1 has nothing above 2.3)
    expected = torch.tensor([[3.0, 2.5, 0.0], [0.0, 0.0, 0.0]])
    assert torch.equal(d.encode(X1), expected)
    assert torch.equal(d.encode(torch.tensor([[2.4, 2.2, -3.0]])), torch.tensor([[2.4, 0.0, 0.0]]))

    loaded = Dictionary.from_pretrained(d.save(tmp_path / "btk"))
    assert "threshold" in load_file(tmp_path / "btk" / WEIGHTS_NAME)
    assert not loaded.training and loaded.threshold.item() == pytest.approx(2.3)
    assert torch.equal(loaded.encode(X1), expected)


def test_unset_threshold_is_a_relu_at_eval(make):
    d = identity(make).eval()
    x = torch.tensor([[0.5, -0.5, 2.0]])  # -0.5 is above the unset threshold (-1) yet inactive
    assert torch.equal(d.encode(x), torch.tensor([[0.5, 0.0, 2.0]]))


def test_aux_loss_is_topk_auxk(make):
    d = identity(make)
    out = d.loss(X1, X1, TrainingContext(1.0, torch.tensor([False, False, True])))
    # e = x - recon = [[0, 0, 0.5], [1, 0.2, 0.1]]; dead feature 2 (pre 0.5, 0.1) gives e_hat
    # [[0, 0, 0.5], [0, 0, 0.1]]; ||e - e_hat||^2 = [0, 1.04] -> 0.52
    # e - mean(e) = +-[0.5, 0.1, -0.2] -> variance 0.30; aux = 0.52 / 0.3
    assert out.terms["aux"].item() == pytest.approx(0.52 / 0.3)
    recon = d.decode(d.activate(d.pre_acts(X1)))  # the training (batch-level) activations
    same = auxk_loss(X1, X1 - recon, d.W_dec, torch.tensor([False, False, True]), d.cfg.aux_k)
    assert out.terms["aux"].item() == pytest.approx(same.item())
