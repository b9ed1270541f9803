"""SPD of a language model (Hugging Face Conv1D and embedding matrices, KL of the logits, on the fly
tokens) and of one module fed from a cache pair (the layerwise mode)."""

import json

import pytest
import torch

from lm_saes.activations.generate import generate
from lm_saes.activations.reader import open_cache
from lm_saes.cli import main
from lm_saes.config import GenerateConfig
from lm_saes.spd import load_decomposition
from lm_saes.spd.config import load_train_config
from lm_saes.spd.train import train_spd

MODULES = '["transformer.wte", "transformer.h.0.attn.c_attn", "transformer.h.*.mlp.c_fc"]'


def lm_overrides(model_dir, dataset_file, out, *changes):
    return ["target.kind=language_model", f"target.model.name={model_dir}", f"target.data.path={dataset_file}",
            "target.data.context_size=32", "target.data.max_tokens=4096", f"output_dir={out}", "steps=4",
            "batch_size=4", "log_every=2", "eval_examples=8", "spd.C=8", f"spd.modules={MODULES}",
            "spd.importance_coefficient=1e-3", "spd.faithfulness_warmup_steps=5", "progress=false", "device=cpu",
            *changes]


@pytest.mark.slow
def test_a_language_model_is_decomposed_on_its_own_text(model_dir, dataset_file, tmp_path):
    result = train_spd(load_train_config(None, lm_overrides(model_dir, dataset_file, tmp_path / "spd")))
    m = result.metrics
    assert set(m["ci_l0"]) == {"transformer.wte", "transformer.h.0.attn.c_attn", "transformer.h.0.mlp.c_fc",
                               "transformer.h.1.mlp.c_fc", "transformer.h.2.mlp.c_fc"}
    assert m["examples"] == 8 and m["ce_clean"] > 0 and m["kl_ci_masked"] >= 0 and m["kl_rounded"] >= 0
    assert set(m) >= {"ce_ci_masked", "ce_rounded", "alive", "alive_total", "faithfulness"}
    record = json.loads((tmp_path / "spd" / "config.json").read_text())
    assert record["output_loss"] == "kl" and record["modules"]["transformer.wte"]["kind"] == "embedding"
    assert record["modules"]["transformer.h.0.attn.c_attn"] == {
        "module": "transformer.h.0.attn.c_attn", "kind": "conv1d", "d_in": 32, "d_out": 96, "C": 8, "tied_to": None}

    spd = load_decomposition(tmp_path / "spd")
    tokens = spd.target.example  # [2, 32] token ids
    ci = spd.causal_importances(tokens)
    assert ci["transformer.wte"].shape == (2, 32, 8) and float(ci["transformer.wte"].max()) <= 1
    ones = {name: torch.ones(2, 32, 8) for name in spd.modules}
    delta = {name: torch.ones(2, 32) for name in spd.modules}
    torch.testing.assert_close(spd.masked_forward(tokens, ones, delta), spd(tokens), atol=1e-4, rtol=1e-4)
    assert main(["eval", str(tmp_path / "spd"), "--set", "examples=4", "--set", "batch_size=2"]) == 0
    assert json.loads((tmp_path / "spd" / "metrics.json").read_text())["eval"]["examples"] == 4


@pytest.mark.slow
def test_one_module_is_decomposed_from_its_cached_input_and_output(model_dir, dataset_file, tmp_path):
    hooks = ["blocks.1.mlp.hook_in", "blocks.1.hook_mlp_out"]
    generate(GenerateConfig(model={"name": str(model_dir), "device": "cpu"}, hooks=hooks, output_dir=tmp_path / "cache",
                            data={"path": str(dataset_file), "context_size": 32, "max_tokens": 4096}, dtype="float32",
                            progress=False, disk_headroom_gb=0))
    overrides = ["target.kind=cache", "target.module=transformer.h.1.mlp", f"target.cache={tmp_path / 'cache' / hooks[0]}",
                 f"target.target_cache={tmp_path / 'cache' / hooks[1]}", f"output_dir={tmp_path / 'spd'}", "steps=6",
                 "batch_size=64", "log_every=3", "eval_examples=128", "spd.C=16", 'spd.modules=["c_fc", "c_proj"]',
                 "spd.importance_coefficient=1e-3", "progress=false", "device=cpu"]
    result = train_spd(load_train_config(None, overrides))
    m = result.metrics
    assert set(m["ci_l0"]) == {"c_fc", "c_proj"} and m["mse_ci_masked"] >= 0
    record = json.loads((tmp_path / "spd" / "config.json").read_text())["target"]
    assert (record["kind"], record["hook_in"], record["hook_out"]) == ("cache", *hooks)
    spd = load_decomposition(tmp_path / "spd")
    x = next(open_cache(tmp_path / "cache" / hooks[0]).batches(64, seed=0, dtype=torch.float32))
    y = next(open_cache(tmp_path / "cache" / hooks[1]).batches(64, seed=0, dtype=torch.float32))
    torch.testing.assert_close(spd(x), y, atol=1e-5, rtol=1e-4)  # the module maps the cached input to the output
