"""The model backend: hooks by name, early stop, shapes, device selection, load errors."""

import pytest
import torch
from transformers import GPT2LMHeadModel

from lm_saes.config import ModelConfig
from lm_saes.errors import ModelError
from lm_saes.models.backend import load_language_model, resolve_device


@pytest.fixture(scope="module")
def lm(model_dir):
    return load_language_model(ModelConfig(name=str(model_dir)))


def test_hook_names_include_transformer_lens_aliases(lm):
    names = lm.hook_names()
    assert "blocks.0.hook_resid_post" in names and "blocks.2.hook_mlp_out" in names
    assert names == sorted(names)


def test_run_to_hooks_matches_hugging_face_and_aliases(lm, model_dir):
    tokens = torch.randint(1, 500, (3, 16))
    acts = lm.run_to_hooks(tokens, ["blocks.1.hook_resid_post", "blocks.1.hook_out", "blocks.0.hook_resid_post"])
    hf = GPT2LMHeadModel.from_pretrained(model_dir, attn_implementation="eager").eval()
    with torch.no_grad():
        hidden = hf(tokens, output_hidden_states=True).hidden_states
    torch.testing.assert_close(acts["blocks.0.hook_resid_post"], hidden[1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(acts["blocks.1.hook_resid_post"], hidden[2], atol=1e-5, rtol=1e-5)
    assert torch.equal(acts["blocks.1.hook_out"], acts["blocks.1.hook_resid_post"])  # alias of one point


def test_forward_stops_after_last_needed_hook(lm):
    later_calls = []
    with lm.bridge.hooks(fwd_hooks=[("blocks.2.hook_resid_post", lambda act, hook: later_calls.append(1))]):
        lm.run_to_hooks(torch.randint(1, 500, (2, 8)), ["blocks.0.hook_resid_post"])
        assert later_calls == []
        lm.bridge(torch.randint(1, 500, (2, 8)), return_type=None)  # a full forward does reach it
    assert later_calls == [1]


def test_out_dtype_and_shapes(lm):
    acts = lm.run_to_hooks(torch.randint(1, 500, (2, 8)), ["blocks.0.hook_resid_post"], out_dtype=torch.bfloat16)
    assert acts["blocks.0.hook_resid_post"].dtype == torch.bfloat16
    shapes = lm.hook_shapes(["blocks.0.hook_resid_post", "blocks.0.mlp.hook_pre", "blocks.0.attn.hook_pattern"])
    assert shapes["blocks.0.hook_resid_post"] == (1, 3, 32)
    assert shapes["blocks.0.mlp.hook_pre"] == (1, 3, 128)  # 4 x d_model
    assert shapes["blocks.0.attn.hook_pattern"] == (1, 4, 3, 3)  # [batch, heads, q, k]
    assert lm.hook_widths(["blocks.0.hook_resid_post", "blocks.0.mlp.hook_pre"]) == {
        "blocks.0.hook_resid_post": 32, "blocks.0.mlp.hook_pre": 128}
    with pytest.raises(ModelError, match=r"blocks.0.attn.hook_pattern \[1, 4, 3, 3\]"):
        lm.hook_widths(["blocks.0.attn.hook_pattern"])


def test_unknown_hook_suggests_and_lists(lm):
    with pytest.raises(ModelError) as e:
        lm.check_hooks(["blocks.0.hook_resid_post", "blocks.9.hook_resid_post"])
    assert "'blocks.9.hook_resid_post'" in str(e.value) and "valid hook points" in str(e.value)


def test_device_selection():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected


def test_missing_local_model_is_a_clear_error(tmp_path):
    with pytest.raises(ModelError, match="no Hugging Face model directory"):
        load_language_model(ModelConfig(name=str(tmp_path / "nothing")))


def test_offline_hub_name_is_a_clear_error():
    with pytest.raises(ModelError, match="could not load model 'no-such-org/no-such-model'"):
        load_language_model(ModelConfig(name="no-such-org/no-such-model"))


def test_gated_hook_is_switched_on_when_requested(lm):
    tokens = torch.randint(1, 500, (2, 8))
    acts = lm.run_to_hooks(tokens, ["blocks.1.hook_mlp_in", "blocks.1.ln2.hook_in"])
    assert lm.gate_of("blocks.1.hook_mlp_in") is None  # switched on now
    assert acts["blocks.1.hook_mlp_in"].shape == (2, 8, 32)
    torch.testing.assert_close(acts["blocks.1.hook_mlp_in"], acts["blocks.1.ln2.hook_in"])
