"""`lm-saes eval` on a dictionary trained from a real cache, checked against a brute-force pass.

The brute force reads every shard straight from its safetensors file, runs the loaded
dictionary over all rows at once and applies the textbook formulas inline; `evaluate` streams
shuffled batches through the metric accumulators. They must agree.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from lm_saes.activations.generate import generate
from lm_saes.activations.manifest import read_manifest
from lm_saes.activations.reader import open_cache
from lm_saes.cli import main
from lm_saes.config import EvalConfig, GenerateConfig, TrainConfig, load_config
from lm_saes.dictionaries import Dictionary
from lm_saes.errors import CacheError
from lm_saes.evaluation.run import evaluate
from lm_saes.training.train import train

HOOK = "blocks.0.hook_resid_post"


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory, model_dir, dataset_file) -> Path:
    root = tmp_path_factory.mktemp("cache")
    generate(load_config(GenerateConfig, None, [
        f"model.name={model_dir}", f"data.path={dataset_file}", "data.context_size=32",
        "data.max_tokens=6000", f'hooks=["{HOOK}"]', f"output_dir={root}", "shard_size_mb=0.1",
        "progress=false", "disk_headroom_gb=0",
    ]))
    return root


@pytest.fixture(scope="module")
def dictionary_dir(tmp_path_factory, cache_root) -> Path:
    out = tmp_path_factory.mktemp("dict") / "sae"
    train(load_config(TrainConfig, None, [
        f"cache={cache_root / HOOK}", f"output_dir={out}", "total_tokens=20480", "batch_size=256",
        "lr=3e-3", "lr_warmup_steps=5", "progress=false", "checkpoint_every=0", "device=cpu",
        "dictionary.kind=topk", "dictionary.d_sae=256", "dictionary.k=6",
    ]))
    return out


def all_rows(hook_dir: Path) -> torch.Tensor:
    manifest = read_manifest(hook_dir)
    rows = []
    for shard in manifest.shards:
        with safe_open(hook_dir / shard.file, framework="pt") as f:
            rows.append(f.get_tensor("activations").float())
    return torch.cat(rows)


def test_metrics_equal_a_brute_force_pass_over_the_whole_cache(cache_root, dictionary_dir):
    x = all_rows(cache_root / HOOK)
    n = len(x)
    results = evaluate(EvalConfig(dictionary=dictionary_dir, tokens=10 * n, batch_size=512, ce_tokens=0, device="cpu"))

    with torch.no_grad():
        out = Dictionary.from_pretrained(dictionary_dir)(x)
    err = out.recon - x
    fired = (out.acts != 0).sum(0)
    assert results["tokens"] == n
    assert results["mse"] == pytest.approx(float((err**2).sum() / n), rel=1e-4)
    assert results["explained_variance"] == pytest.approx(
        1 - float((err**2).sum() / ((x - x.mean(0)) ** 2).sum()), abs=1e-5)
    assert results["l0"] == pytest.approx(6.0)  # TopK: exactly k per token
    assert results["l1"] == pytest.approx(float(out.acts.abs().sum() / n), rel=1e-4)
    assert results["shrinkage"] == pytest.approx(float((out.recon.norm(dim=1) / x.norm(dim=1)).mean()), rel=1e-4)
    assert results["dead_fraction"] == pytest.approx(float((fired == 0).float().mean()))
    assert results["alive_fraction"] == pytest.approx(1 - results["dead_fraction"])
    histogram = results["density_histogram"]
    assert sum(histogram["counts"]) + histogram["dead"] == 256
    assert histogram["log10_edges"][0] == pytest.approx(math.log10(1 / n))
    assert histogram["log10_edges"][-1] == 0
    assert 0.5 < results["explained_variance"] < 1

    stored = json.loads((dictionary_dir / "metrics.json").read_text())
    assert stored["eval"] == results and "final_batch" in stored  # merged, training record kept


def test_ce_loss_recovered_and_kl_spliced_into_the_model(dictionary_dir):
    results = evaluate(EvalConfig(dictionary=dictionary_dir, tokens=512, ce_tokens=2048, ce_batch_size=8, device="cpu"))
    clean, spliced, zero = results["ce_clean"], results["ce_spliced"], results["ce_zero_ablation"]
    assert results["ce_loss_recovered"] == pytest.approx((zero - spliced) / (zero - clean))
    assert results["kl_spliced"] > 0 and results["ce_tokens"] > 1500
    assert clean != spliced != zero


def test_eval_command_prints_the_table(dictionary_dir, capsys):
    assert main(["eval", str(dictionary_dir), "--set", "tokens=1024", "--set", "ce_tokens=0", "--set", "device=cpu"]) == 0
    printed = capsys.readouterr().out
    for name in ("explained_variance", "l0", "mse", "shrinkage", "dead_fraction", "density histogram"):
        assert name in printed


def test_a_cache_of_another_width_is_refused(dictionary_dir, tmp_path, model_dir, dataset_file):
    generate(load_config(GenerateConfig, None, [
        f"model.name={model_dir}", f"data.path={dataset_file}", "data.context_size=32",
        "data.max_tokens=1000", f'hooks=["blocks.0.mlp.hook_post"]', f"output_dir={tmp_path}",
        "progress=false", "disk_headroom_gb=0",
    ]))
    with pytest.raises(CacheError, match="d_model=128 .* expects d_in=32"):
        evaluate(EvalConfig(dictionary=dictionary_dir, cache=tmp_path / "blocks.0.mlp.hook_post", ce_tokens=0, device="cpu"))


def test_a_synthetic_cache_adds_ground_truth_metrics_and_needs_no_model(tmp_path):
    """On a cache with ground truth, eval reports MMCS and the fraction of features recovered (by
    hand from the decoder's cosines with the true directions), and skips CE/KL (no model)."""
    from lm_saes.activations.synthetic import read_ground_truth
    from lm_saes.dictionaries import build_dictionary, dictionary_config
    from lm_saes.training.train import TRAIN_CONFIG_NAME

    root = tmp_path / "syn"
    generate(load_config(GenerateConfig, None, [
        f"output_dir={root}", "progress=false", "disk_headroom_gb=0", "synthetic.n_features=24", "synthetic.d_model=8",
        "synthetic.n_tokens=4096", "synthetic.mean_active=2.0"]))
    truth = read_ground_truth(root / "synthetic")  # [24, 8]
    # A decoder holding 10 of the true directions exactly, and 6 directions halfway between two others.
    halfway = torch.nn.functional.normalize(truth[10:16] + truth[16:22], dim=1)
    dictionary = build_dictionary(dictionary_config({"kind": "topk", "d_sae": 16, "k": 2}), 8, 8)
    with torch.no_grad():
        dictionary.W_dec.copy_(torch.cat([truth[:10], halfway]))
        dictionary.W_enc.copy_(dictionary.W_dec.T)
    out = dictionary.save(tmp_path / "sae", extra={"source": {"cache": str(root / "synthetic")}})
    results = evaluate(EvalConfig(dictionary=out, tokens=4096, device="cpu"))  # the whole cache: one batch
    cosines = torch.nn.functional.normalize(truth, dim=1) @ dictionary.W_dec.detach().T  # [24 true, 16 learned]
    best = cosines.max(dim=1).values
    rows = torch.cat([open_cache(root / "synthetic").load_shard(i)["activations"].float()
                      for i in range(len(read_manifest(root / "synthetic").shards))])
    alive = (dictionary.encode(rows) != 0).any(0)
    assert results["dictionary_mmcs"] == pytest.approx(float(cosines.max(dim=0).values[alive].mean()), abs=1e-6)
    assert best[:10].tolist() == pytest.approx([1.0] * 10, abs=1e-6)
    assert results["mmcs"] == pytest.approx(float(best.mean()), abs=1e-6)
    assert results["features_recovered"] == pytest.approx(float((best >= 0.9).float().mean()))
    assert results["features_recovered"] >= 10 / 24 - 1e-6 and results["mmcs"] < 1
    assert "ce_loss_recovered" not in results and "explained_variance" in results
    assert not (out / TRAIN_CONFIG_NAME).exists()
