"""The masked forward of each decomposable kind against the module itself."""

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from lm_saes.spd.components import (
    CONV1D, EMBEDDING, IDENTITY, LINEAR, Masks, Subcomponents, masked_forward, module_kind, target_matrix,
)


def decomposed(module: nn.Module, C: int = 3) -> tuple[Subcomponents, torch.Tensor]:
    kind = module_kind(module)
    W = target_matrix(module, kind)
    torch.manual_seed(0)
    return Subcomponents(kind, W.shape[0], W.shape[1], C), W


def test_the_kinds_and_their_matrices_in_the_x_at_w_orientation():
    linear, conv, embed = nn.Linear(4, 3), Conv1D(3, 4), nn.Embedding(10, 3)
    assert [module_kind(m) for m in (linear, conv, embed, nn.LayerNorm(3))] == [LINEAR, CONV1D, EMBEDDING, None]
    x = torch.randn(2, 4)
    for module in (linear, conv):
        torch.testing.assert_close(x @ target_matrix(module, module_kind(module)) + module.bias, module(x))
    assert torch.equal(target_matrix(None, IDENTITY, 5), torch.eye(5))


def test_all_ones_masks_with_the_delta_component_give_the_modules_own_output():
    x = torch.randn(5, 2, 4)
    ids = torch.randint(0, 10, (5, 2))
    for module, inputs in ((nn.Linear(4, 3), x), (Conv1D(3, 4), x), (nn.Embedding(10, 3), ids)):
        parts, W = decomposed(module)
        ones = torch.ones(5, 2, 3)
        out = masked_forward(parts, inputs, Masks(ones, torch.ones(5, 2)), W, getattr(module, "bias", None))
        torch.testing.assert_close(out, module(inputs))


def test_masks_scale_each_subcomponent_and_the_delta_its_residual():
    module = nn.Linear(4, 3)
    parts, W = decomposed(module, C=2)
    x = torch.randn(6, 4)
    m = torch.tensor([0.5, 0.0]).expand(6, 2)
    expected = 0.5 * (x @ parts.V[:, :1]) @ parts.U[:1] + module.bias
    torch.testing.assert_close(masked_forward(parts, x, Masks(m), W, module.bias), expected)
    with_delta = masked_forward(parts, x, Masks(m, torch.full((6,), 0.25)), W, module.bias)
    torch.testing.assert_close(with_delta, expected + 0.25 * x @ (W - parts.V @ parts.U))


def test_an_embeddings_subcomponents_are_rows_of_v():
    parts, W = decomposed(nn.Embedding(10, 3), C=4)
    ids = torch.tensor([[7, 1]])
    torch.testing.assert_close(parts.inner(ids), parts.V[ids])


def test_a_tied_module_is_its_source_transposed_and_owns_no_parameters():
    torch.manual_seed(0)
    a = Subcomponents(LINEAR, 5, 2, 4)
    b = Subcomponents(LINEAR, 2, 5, 4, source=a)
    assert list(dict(b.named_parameters())) == []
    torch.testing.assert_close(b.V @ b.U, (a.V @ a.U).T)
