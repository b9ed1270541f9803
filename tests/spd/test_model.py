"""ComponentModel: modules found by name patterns, the patched forwards, identity insertions, tying,
and the errors for patterns that match nothing or modules SPD cannot decompose."""

import pytest
import torch
from torch import nn

from lm_saes.errors import ConfigError
from lm_saes.spd.components import Masks
from lm_saes.spd.config import SPDConfig
from lm_saes.spd.model import ComponentModel, decomposable_modules, key


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(11, 6)
        self.layers = nn.ModuleList(nn.Linear(6, 6) for _ in range(2))
        self.norm = nn.LayerNorm(6)
        self.out = nn.Linear(6, 11, bias=False)

    def forward(self, ids):
        x = self.embed(ids)
        for layer in self.layers:
            x = x + torch.relu(layer(x))
        return self.out(self.norm(x))


def settings(**changes) -> SPDConfig:
    return SPDConfig.model_validate({"C": 4, "modules": ["embed", "layers.*"], "importance_coefficient": 1.0, **changes})


def build(**changes) -> tuple[Tiny, ComponentModel, torch.Tensor]:
    torch.manual_seed(0)
    target = Tiny().eval()
    ids = torch.randint(0, 11, (3, 5))
    return target, ComponentModel(target, settings(**changes), ids), ids


def test_patterns_pick_the_matching_matrices_in_the_models_order():
    _, model, _ = build(modules=["layers.*", "embed"], C_per_module={"layers.1": 2})
    assert list(model.plan) == ["embed", "layers.0", "layers.1"]
    assert [d.C for d in model.plan.values()] == [4, 4, 2]
    assert decomposable_modules(Tiny()) == {"embed": "embedding", "layers.0": "linear", "layers.1": "linear",
                                            "out": "linear"}


def test_without_masks_the_model_is_the_target_and_its_inputs_are_captured():
    target, model, ids = build()
    clean = target(ids)  # patched, but nothing masked: the original forwards
    out, seen = model.run_capturing(ids)
    torch.testing.assert_close(out, clean)
    assert torch.equal(seen["embed"], ids) and seen["layers.0"].shape == (3, 5, 6)
    model.remove()
    torch.testing.assert_close(target(ids), clean)


def test_full_masks_with_the_delta_component_reproduce_the_target():
    target, model, ids = build(identity_insertions=["norm"])
    assert "norm.pre_identity" in model.plan and model.plan["norm.pre_identity"].d_in == 6
    clean = target(ids)
    deltas = model.weight_deltas()
    masks = {n: Masks(torch.ones(3, 5, d.C), torch.ones(3, 5), deltas[n]) for n, d in model.plan.items()}
    torch.testing.assert_close(model.run(ids, masks), clean)
    first = {"layers.0": Masks(torch.zeros(3, 5, 4))}  # layer 0's output reduced to its bias
    assert not torch.allclose(model.run(ids, first), clean)


def test_identity_insertions_hand_their_subcomponents_the_modules_input():
    target, model, ids = build(modules=["layers.0"], identity_insertions=["layers.1"])
    _, seen = model.run_capturing(ids)
    assert set(seen) == {"layers.0", "layers.1.pre_identity"}
    parts = model.parts[key("layers.1.pre_identity")]
    assert parts.V.shape == (6, 4) and torch.equal(model.weight("layers.1.pre_identity"), torch.eye(6))


def test_tied_modules_share_subcomponents():
    _, model, _ = build(modules=["layers.*"], tie=[("layers.0", "layers.1")])
    assert model.plan["layers.1"].tied_to == "layers.0"
    names = [n for n, _ in model.named_parameters() if n.startswith("parts.")]
    assert names == ["parts.layers-0.V_own", "parts.layers-0.U_own"]


def test_a_pattern_matching_nothing_lists_the_decomposable_modules():
    with pytest.raises(ConfigError, match=r"'layer\.\*' matches no module of the model; its decomposable modules "
                                          r"are: embed \(embedding\), layers\.0 \(linear\), layers\.1 \(linear\), "
                                          r"out \(linear\)"):
        build(modules=["layer.*"])


def test_an_unsupported_module_is_named_with_the_supported_ones():
    with pytest.raises(ConfigError, match="matches norm of type LayerNorm, which SPD cannot decompose; supported: "
                                          "nn.Linear, Hugging Face Conv1D .* and nn.Embedding"):
        build(modules=["norm"])


def test_tying_needs_transposed_shapes():
    with pytest.raises(ConfigError, match=r"out \(6 x 11, C=4\) is not the transpose of layers.0 \(6 x 6, C=4\)"):
        build(modules=["layers.0", "out"], tie=[("layers.0", "out")])
