"""The sparse products: by hand, against their dense eager twins (outputs and gradients), and the
same bits for a member whatever the stack around it."""

from __future__ import annotations

import pytest
import torch

from lm_saes.dictionaries.sparse import (
    bag_decode, dense_decode, dense_gather, scatter_outer, sparse_decode, sparse_gather,
)


def test_scatter_outer_by_hand():
    indices = torch.tensor([[0, 2], [2, 1]])
    weights = torch.tensor([[1.0, 2.0], [3.0, 0.5]])
    rows = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # feature 0: 1 [1, 0]; feature 1: 0.5 [0, 1]; feature 2: 2 [1, 0] + 3 [0, 1]
    expected = torch.tensor([[1.0, 0.0], [0.0, 0.5], [2.0, 3.0]])
    assert torch.equal(scatter_outer(indices, weights, rows, 3), expected)


def test_scatter_outer_reads_rows_through_row_of():
    indices, weights = torch.tensor([[0], [1], [0]]), torch.tensor([[1.0], [2.0], [3.0]])
    rows = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # pairs on rows 1, 1, 0: feature 0 gets 1 [0, 1] + 3 [1, 0]; feature 1 gets 2 [0, 1]
    expected = torch.tensor([[3.0, 1.0], [0.0, 2.0]])
    assert torch.equal(scatter_outer(indices, weights, rows, 2, torch.tensor([1, 1, 0])), expected)


def test_bag_decode_by_hand_with_tokens_of_zero_one_and_two_features():
    W_dec = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    tokens, features = torch.tensor([0, 0, 2]), torch.tensor([1, 2, 0])
    values = torch.tensor([2.0, 3.0, 0.5])
    # token 0: 2 [0, 1] + 3 [1, 1]; token 1: nothing; token 2: 0.5 [1, 0]
    expected = torch.tensor([[3.0, 5.0], [0.0, 0.0], [0.5, 0.0]])
    assert torch.equal(bag_decode(values, tokens, features, 3, W_dec), expected)


def stack_of_codes(M=2, N=24, d_sae=30, d=6, widths=(4, 7), seed=0):
    """Pre-activations of M members and each member's top widths[i] features per token, padded."""
    g = torch.Generator().manual_seed(seed)
    x, W_enc, bias = torch.randn(M, N, d, generator=g), torch.randn(M, d, d_sae, generator=g), torch.randn(M, d_sae, generator=g)
    K = max(widths)
    with torch.no_grad():
        pre = torch.baddbmm(bias.unsqueeze(1), x, W_enc)
    indices = torch.stack([torch.nn.functional.pad(p.topk(k, dim=-1).indices, (0, K - k))
                           for p, k in zip(pre.unbind(0), widths)])
    return x, W_enc, bias, indices


@pytest.mark.parametrize("by_token", [False, True], ids=["row-per-token", "rows-on-tokens"])
def test_sparse_gather_equals_its_dense_twin_with_gradients(by_token):
    x, W_enc, bias, indices = stack_of_codes()
    tokens = None
    if by_token:  # BatchTopK's form: a row per kept pair, on any token (some twice, some never)
        g = torch.Generator().manual_seed(2)
        tokens = torch.randint(0, x.shape[1], (x.shape[0], 40), generator=g)
        indices = torch.randint(0, W_enc.shape[-1], (x.shape[0], 40, 1), generator=g)
    upstream = torch.randn(indices.shape, generator=torch.Generator().manual_seed(1))
    results = []
    for gather in (sparse_gather, dense_gather):
        W, b = W_enc.clone().requires_grad_(), bias.clone().requires_grad_()
        with torch.set_grad_enabled(gather is dense_gather):  # the fast path's pre carries no graph
            pre = torch.baddbmm(b.unsqueeze(1), x, W)
        out = gather(pre, x, W, b, indices, tokens)
        (out * upstream).sum().backward()
        results.append((out.detach(), W.grad, b.grad))
    for fast, slow in zip(*results):
        torch.testing.assert_close(fast, slow)
    assert results[0][1].ne(0).any() and results[0][2].ne(0).any()
    members = torch.arange(len(x)).view(-1, 1, 1)
    rows = torch.arange(x.shape[1]).view(1, -1, 1) if tokens is None else tokens.unsqueeze(-1)
    assert torch.equal(results[0][0], pre.detach()[members, rows, indices])  # pre[i, token of row r, feature]


def test_sparse_decode_equals_its_dense_twin_with_gradients():
    _, _, _, indices = stack_of_codes()
    widths = [4, 7]
    g = torch.Generator().manual_seed(2)
    values = torch.rand(indices.shape, generator=g) * (torch.arange(7) < torch.tensor(widths).view(-1, 1, 1))
    W_dec = torch.randn(2, 30, 5, generator=g)
    upstream = torch.randn(2, 24, 5, generator=g)
    results = []
    for decode in (sparse_decode, dense_decode):
        v, W = values.clone().requires_grad_(), W_dec.clone().requires_grad_()
        out = decode(v, indices, W, widths)
        (out * upstream).sum().backward()
        results.append((out.detach(), v.grad, W.grad))
    (fast_out, fast_v, fast_W), (slow_out, slow_v, slow_W) = results
    torch.testing.assert_close(fast_out, slow_out)
    torch.testing.assert_close(fast_W, slow_W)
    for i, k in enumerate(widths):  # a padded slot's gradient is never used (its value is a constant 0)
        torch.testing.assert_close(fast_v[i, :, :k], slow_v[i, :, :k])


@pytest.mark.parametrize("product", ["gather", "decode"])
def test_a_members_bits_do_not_depend_on_the_stack_around_it(product):
    """Member 1 of a stack of two (padded to member 0's width) against member 1 alone (its own width)."""
    x, W_enc, bias, indices = stack_of_codes(widths=(9, 5))
    g = torch.Generator().manual_seed(3)
    own = torch.arange(9) < torch.tensor([9, 5]).view(-1, 1, 1)  # [2, 1, 9]: a member's own slots
    upstream = torch.randn(indices.shape if product == "gather" else (2, 24, 6), generator=g)
    if product == "gather":
        upstream = upstream * own  # a padded slot's value is a constant: no gradient comes back through it
    values = torch.rand(indices.shape, generator=g) * own

    def run(members: slice, widths: list[int]):
        width = max(widths)
        W = W_enc[members].clone().requires_grad_()
        if product == "gather":
            b = bias[members].clone().requires_grad_()
            pre = torch.baddbmm(b.unsqueeze(1), x[members], W).detach()
            out = sparse_gather(pre, x[members], W, b, indices[members, :, :width])
            (out * upstream[members, :, :width]).sum().backward()
            return out[-1, :, :5].detach(), W.grad[-1], b.grad[-1]
        W_dec = W.transpose(1, 2).contiguous().detach().requires_grad_()  # [m, d_sae, d]
        v = values[members, :, :width].clone().requires_grad_()
        out = sparse_decode(v, indices[members, :, :width], W_dec, widths)
        (out * upstream[members]).sum().backward()
        return out[-1].detach(), W_dec.grad[-1], v.grad[-1, :, :5]

    for a, b in zip(run(slice(0, 2), [9, 5]), run(slice(1, 2), [5])):
        assert torch.equal(a, b)
