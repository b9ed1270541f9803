"""Ground-truth caches: `lm-saes generate` with a [synthetic] source writes an ordinary 1d cache
of known features in superposition, deterministic from its seed and resumable after a kill."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
import torch

from lm_saes.activations.generate import generate
from lm_saes.activations.manifest import read_manifest
from lm_saes.activations.reader import open_cache
from lm_saes.activations.synthetic import GROUND_TRUTH_NAME, read_ground_truth
from lm_saes.config import GenerateConfig, SyntheticConfig, load_config
from lm_saes.data.synthetic import features_from_config, make_features
from lm_saes.errors import ConfigError

SYNTHETIC = {"n_features": 48, "d_model": 12, "n_tokens": 6000, "mean_active": 3.0, "decay": 0.5,
             "n_groups": 4, "correlation": 0.2, "noise": 0.01, "seed": 3}


def overrides(out, **synthetic) -> list[str]:
    return [f"output_dir={out}", "shard_size_mb=0.05", "progress=false", "disk_headroom_gb=0", "dtype=float32",
            *[f"synthetic.{k}={v}" for k, v in {**SYNTHETIC, **synthetic}.items()]]


def config(out, **synthetic) -> GenerateConfig:
    return load_config(GenerateConfig, None, overrides(out, **synthetic))


def test_a_synthetic_cache_is_an_ordinary_1d_cache_with_its_true_features_beside_it(tmp_path):
    cfg = config(tmp_path / "syn")
    result = generate(cfg)
    hook = cfg.output_dir / "synthetic"
    manifest = read_manifest(hook)
    assert (manifest.model, manifest.layout, manifest.d_model, manifest.n_tokens) == ("synthetic", "1d", 12, 6000)
    assert result.n_tokens == 6000 and len(manifest.shards) > 1  # several chunks, so resuming is per chunk
    truth = read_ground_truth(hook)
    assert torch.equal(truth, features_from_config(cfg.synthetic).directions)
    assert torch.allclose(truth.norm(dim=1), torch.ones(48))
    rows = torch.cat([open_cache(hook).load_shard(i)["activations"] for i in range(len(manifest.shards))])
    assert rows.shape == (6000, 12)
    assert bool((rows.norm(dim=1) > 0).all())  # the noise leaves no exactly zero sample
    assert read_ground_truth(tmp_path) is None  # a directory without ground truth has none


def test_the_same_config_writes_the_same_bytes(tmp_path):
    a, b = generate(config(tmp_path / "a")), generate(config(tmp_path / "b"))
    ma, mb = read_manifest(a.caches["synthetic"]), read_manifest(b.caches["synthetic"])
    assert [s.sha256 for s in ma.shards] == [s.sha256 for s in mb.shards]
    other = read_manifest(generate(config(tmp_path / "c", seed=4)).caches["synthetic"])
    assert [s.sha256 for s in other.shards] != [s.sha256 for s in ma.shards]


def test_samples_follow_the_configured_probabilities_and_magnitudes(tmp_path):
    out = generate(config(tmp_path / "p", n_groups=0, correlation=0.0, noise=0.0, n_tokens=20000,
                          magnitude=[0.5, 0.5], decay=0.0))
    cache = open_cache(out.caches["synthetic"])
    rows = torch.cat([cache.load_shard(i)["activations"] for i in range(len(cache.shards))])
    truth = read_ground_truth(out.caches["synthetic"])
    # Every feature on with p = 3/48 and magnitude 0.5: E||x||^2 = sum_ij E[a_i a_j] <d_i, d_j>
    # with E[a_i^2] = p 0.25 and E[a_i a_j] = p^2 0.25 (i != j, independent).
    p, gram = 3 / 48, truth @ truth.T
    expected = float(p * 0.25 * gram.diagonal().sum() + p * p * 0.25 * (gram.sum() - gram.diagonal().sum()))
    assert float(rows.pow(2).sum(1).mean()) == pytest.approx(expected, rel=0.05)


@pytest.mark.slow
def test_a_killed_synthetic_generate_resumes_to_the_same_cache(tmp_path):
    reference = generate(config(tmp_path / "ref", n_tokens=60000))
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "lm_saes", "generate"] + [a for o in overrides(out, n_tokens=60000) for a in ("--set", o)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    log = out / ".generate" / "rank-0.jsonl"
    deadline = time.monotonic() + 120
    while not (log.is_file() and len(log.read_text().splitlines()) >= 2):
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_shards = len(read_manifest(reference.caches["synthetic"]).shards)
    assert len(log.read_text().splitlines()) < n_shards, "killed too late"
    resumed = generate(config(out, n_tokens=60000))
    assert not resumed.reused
    a, b = read_manifest(reference.caches["synthetic"]), read_manifest(resumed.caches["synthetic"])
    assert [s.sha256 for s in a.shards] == [s.sha256 for s in b.shards]
    assert (out / "synthetic" / GROUND_TRUTH_NAME).read_bytes() == (
        tmp_path / "ref" / "synthetic" / GROUND_TRUTH_NAME).read_bytes()


@pytest.mark.parametrize("bad, message", [
    ({"mean_active": 60.0}, "mean_active=60 exceeds n_features=48"),
    ({"mean_active": None, "feature_probability": 1.5}, "feature_probability: Input should be less than or equal to 1"),
    ({"mean_active": None, "feature_probability": -0.1}, "feature_probability: Input should be greater than or equal to 0"),
    ({"mean_active": 40.0, "decay": 2.0}, "would fire with probability"),
    ({"magnitude": [1.0, 0.5]}, "magnitude must be [low, high]"),
    ({"n_groups": 0, "correlation": 0.3}, "correlation > 0 needs n_groups > 0"),
    ({"mean_active": None}, "set exactly one of mean_active or feature_probability"),
])
def test_bad_synthetic_settings_are_clear_errors(bad, message):
    with pytest.raises(ConfigError) as raised:
        load_config(GenerateConfig, None, ["output_dir=x", *[f"synthetic.{k}={v}" for k, v in {**SYNTHETIC, **bad}.items()
                                                              if v is not None]])
    assert message in str(raised.value)


def test_a_synthetic_cache_takes_no_model_and_one_1d_hook():
    with pytest.raises(ConfigError, match="a synthetic cache has no model or data"):
        load_config(GenerateConfig, None, ["output_dir=x", "model.name=gpt2", *[f"synthetic.{k}={v}" for k, v in SYNTHETIC.items()]])
    with pytest.raises(ConfigError, match="layout = '1d'"):
        load_config(GenerateConfig, None, ["output_dir=x", "layout=2d", *[f"synthetic.{k}={v}" for k, v in SYNTHETIC.items()]])
    with pytest.raises(ConfigError, match="set model and data"):
        load_config(GenerateConfig, None, ["output_dir=x", "hooks=[\"h\"]"])


def test_feature_probability_sets_the_most_frequent_feature():
    features = features_from_config(SyntheticConfig(n_features=10, d_model=4, n_tokens=1, feature_probability=0.2,
                                                    decay=1.0))
    assert features.probabilities[0] == pytest.approx(0.2) and features.probabilities[9] == pytest.approx(0.02)
    assert torch.equal(make_features(10, 4, mean_active=1.0).probabilities, torch.full((10,), 0.1))
