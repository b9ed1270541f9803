"""Training from a real cache: learning, saving, exact resume, NaN guard, transcoders, bad inputs."""

from __future__ import annotations

import itertools
import shutil
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lm_saes.activations.generate import generate
from lm_saes.activations.reader import open_cache
from lm_saes.artifacts import staging_dir
from lm_saes.config import GenerateConfig, TrainConfig, load_config
from lm_saes.dictionaries import Dictionary
from lm_saes.errors import CacheError, ConfigError, LmSaesError
from lm_saes.training.checkpoint import checkpoint_path, load_checkpoint
from lm_saes.training.train import train
from lm_saes.training.trainer import TrainingDiverged

RESID, MLP_IN, MLP_OUT = "blocks.1.hook_resid_post", "blocks.1.mlp.hook_in", "blocks.1.hook_mlp_out"


def make_cache(root: Path, model_dir: Path, dataset_file: Path, seed: int = 0) -> Path:
    cfg = load_config(GenerateConfig, None, [
        f"model.name={model_dir}", f"data.path={dataset_file}", "data.context_size=32",
        "data.max_tokens=24000", f'hooks=["{RESID}", "{MLP_IN}", "{MLP_OUT}"]', f"output_dir={root}",
        "shard_size_mb=0.5", "progress=false", "disk_headroom_gb=0", f"seed={seed}",
    ])
    generate(cfg)
    return root


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory, model_dir, dataset_file) -> Path:
    return make_cache(tmp_path_factory.mktemp("cache"), model_dir, dataset_file)


def overrides(cache_root: Path, out: Path, *extra: str) -> list[str]:
    return [
        f"cache={cache_root / RESID}", f"output_dir={out}", "total_tokens=40960", "batch_size=256",
        "lr=3e-3", "lr_warmup_steps=5", "log_every=10", "checkpoint_every=0", "progress=false",
        "dictionary.kind=topk", "dictionary.d_sae=128", "dictionary.k=8", "dictionary.aux_k=32",
        "dead_after_tokens=5000", *extra,
    ]


def config(cache_root: Path, out: Path, *extra: str) -> TrainConfig:
    return load_config(TrainConfig, None, overrides(cache_root, out, *extra))


def log_lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]


def test_topk_learns_and_the_saved_dictionary_works_on_raw_activations(cache_root, tmp_path):
    result = train(config(cache_root, tmp_path / "sae"))
    log = log_lines(tmp_path / "sae")
    assert [r["step"] for r in log] == list(range(10, 161, 10))
    assert log[-1]["explained_variance"] > 0.7  # the data-fitted start is past 0.5 by step 10; it keeps learning
    assert log[-1]["explained_variance"] > log[0]["explained_variance"] + 0.05
    assert log[-1]["l0"] == pytest.approx(8.0)
    assert all(0 <= r["input_wait"] < 1 for r in log)  # the share of the time spent waiting for the reader
    assert result.metrics == log[-1]
    for name in ("config.json", "weights.safetensors", "metrics.json", "train_config.json"):
        assert (tmp_path / "sae" / name).is_file()
    assert not checkpoint_path(tmp_path / "sae").exists()

    loaded = Dictionary.from_pretrained(tmp_path / "sae")
    raw = next(open_cache(cache_root / RESID).batches(512, seed=9)).float()
    out = loaded(raw)
    ev = 1 - (out.recon - raw).pow(2).sum() / (raw - raw.mean(0)).pow(2).sum()
    assert float(ev) > 0.7  # normalisation folded in: raw activations in, raw reconstruction out
    assert int((out.acts != 0).sum(1).max()) <= 8
    meta = json.loads((tmp_path / "sae" / "config.json").read_text())
    assert meta["source"]["hook_in"] == RESID and meta["kind"] == "topk"


@pytest.mark.slow
def test_killed_training_resumes_to_identical_weights(cache_root, tmp_path):
    args = overrides(cache_root, tmp_path / "ref", "total_tokens=256000", "checkpoint_every=20", "log_every=20")
    train(load_config(TrainConfig, None, args))
    killed = [a if not a.startswith("output_dir=") else f"output_dir={tmp_path / 'killed'}" for a in args]
    cmd = [sys.executable, "-m", "lm_saes", "train"] + [x for a in killed for x in ("--set", a)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not checkpoint_path(tmp_path / "killed").is_file():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    state, _ = load_checkpoint(tmp_path / "killed", torch.device("cpu"))
    assert 0 < state["step"] < 1000
    result = train(load_config(TrainConfig, None, killed))
    assert result.resumed_from_step == state["step"]
    a, b = Dictionary.from_pretrained(tmp_path / "ref"), Dictionary.from_pretrained(tmp_path / "killed")
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), name
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("tokens_per_s", "input_wait")} for r in rows]
    assert strip(log_lines(tmp_path / "killed")) == strip(log_lines(tmp_path / "ref"))


def test_nan_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
    torch.manual_seed(0)
    batches = [torch.randn(64, 16) for _ in range(30)]
    batches[17][3, 5] = float("nan")
    cfg = TrainConfig.model_validate(dict(
        dictionary={"kind": "topk", "d_sae": 32, "k": 4}, output_dir=tmp_path, total_tokens=64 * 30,
        batch_size=64, log_every=5, checkpoint_every=5, progress=False, normalization_batches=2,
    ))
    with pytest.raises(TrainingDiverged, match="NaN or infinite before step 20"):
        train(cfg, batches=batches)
    state, _ = load_checkpoint(tmp_path, torch.device("cpu"))
    assert state["step"] == 15
    assert all(torch.isfinite(v).all() for v in state["dictionary"].values())
    assert not (tmp_path / "metrics.json").exists()


def test_transcoder_from_two_hooks_of_one_run(cache_root, tmp_path):
    cfg = config(cache_root, tmp_path / "tc", f"cache={cache_root / MLP_IN}", f"target_cache={cache_root / MLP_OUT}")
    result = train(cfg)
    loaded = Dictionary.from_pretrained(tmp_path / "tc")
    assert loaded.transcoder and result.metrics["explained_variance"] > 0.3
    meta = json.loads((tmp_path / "tc" / "config.json").read_text())
    assert (meta["source"]["hook_in"], meta["source"]["hook_out"]) == (MLP_IN, MLP_OUT)


def test_a_token_normalising_batchtopk_transcoder_scales_targets_by_their_inputs_factor(cache_root, tmp_path):
    out = tmp_path / "tc"
    # the residual stream as input: its tokens' norms vary (the MLP's input, a LayerNorm's output, has rho ~ 1)
    cfg = config(cache_root, out, f"target_cache={cache_root / MLP_OUT}", "dictionary.kind=batchtopk")
    result = train(cfg)
    loaded = Dictionary.from_pretrained(out)
    assert loaded.cfg.normalize_tokens and loaded.transcoder and result.metrics["explained_variance"] > 0.3
    scales = json.loads((out / "config.json").read_text())["training_scales"]
    x, y = (next(iter(open_cache(cache_root / hook).batches(4096, shuffle=False))).float()
            for hook in (RESID, MLP_OUT))  # aligned rows: one generate run
    rho = x.shape[-1] ** 0.5 / x.norm(dim=-1)
    # inputs at scale 1 (each token already at norm sqrt(d)); targets times their input's rho at average norm sqrt(d)
    assert scales["input"] == 1.0
    assert (y.norm(dim=-1) * rho).mean() * scales["output"] == pytest.approx(y.shape[-1] ** 0.5, rel=0.1)
    with torch.no_grad():  # a token's features do not depend on its norm; its reconstruction scales with it
        base, doubled = loaded(x[:256]), loaded(3 * x[:256])
    torch.testing.assert_close(doubled.acts, base.acts)
    torch.testing.assert_close(doubled.recon, 3 * base.recon)


def test_a_short_batchtopk_run_keeps_about_k_features_per_token_at_inference(cache_root, tmp_path):
    """The inference threshold follows the run's moving cut (measured on this cache: L0 8.0 at k 8;
    9.9 with the old momentum 0.99, whose threshold still remembered the first batches)."""
    train(config(cache_root, tmp_path / "btk", "dictionary.kind=batchtopk", "dictionary.d_sae=512", "lr=5e-4"))
    loaded = Dictionary.from_pretrained(tmp_path / "btk")
    x = next(iter(open_cache(cache_root / RESID).batches(4096, seed=1))).float()
    with torch.no_grad():
        l0 = (loaded.encode(x) != 0).float().sum(-1).mean()
    assert abs(l0 / loaded.cfg.k - 1) < 0.05, float(l0)


def test_caches_from_different_runs_do_not_pair(cache_root, tmp_path, model_dir, dataset_file):
    other = make_cache(tmp_path / "other", model_dir, dataset_file, seed=1)
    cfg = config(cache_root, tmp_path / "tc", f"cache={cache_root / MLP_IN}", f"target_cache={other / MLP_OUT}")
    with pytest.raises(CacheError, match="not generated in one run"):
        train(cfg)


def test_finished_directory_needs_overwrite(cache_root, tmp_path):
    cfg = config(cache_root, tmp_path / "sae", "total_tokens=2560")
    train(cfg)
    with pytest.raises(ConfigError, match="already holds a finished dictionary"):
        train(cfg)
    train(cfg.model_copy(update={"overwrite": True}))


def test_checkpoint_of_another_config_is_refused(cache_root, tmp_path):
    from lm_saes.training.checkpoint import save_checkpoint

    save_checkpoint(tmp_path, {"step": 1}, {"something": "else"})
    with pytest.raises(ConfigError, match="checkpoint of a different run"):
        train(config(cache_root, tmp_path, "total_tokens=2560"))


def test_on_the_fly_gives_the_cache_rows_and_trains(cache_root, tmp_path, model_dir, dataset_file):
    from lm_saes.config import OnTheFlyConfig
    from lm_saes.training.live import load_source, model_pairs

    src = OnTheFlyConfig.model_validate(dict(
        model={"name": str(model_dir), "device": "cpu"}, hook=MLP_IN, target_hook=MLP_OUT, shuffle_tokens=1000,
        data={"path": str(dataset_file), "context_size": 32, "max_tokens": 3200},
    ))
    lm, widths = load_source(src)
    pairs = list(itertools.islice(model_pairs(lm, src, 100, seed=0, device=torch.device("cpu")), 30))
    live_x = torch.cat([x for x, _ in pairs])
    live_y = torch.cat([y for _, y in pairs])
    # The same model and data through `lm-saes generate` (float32): the same rows, in another order.
    cache = load_config(GenerateConfig, None, [
        f"model.name={model_dir}", f"data.path={dataset_file}", "data.context_size=32", "data.max_tokens=3200",
        f'hooks=["{MLP_IN}", "{MLP_OUT}"]', f"output_dir={tmp_path / 'c'}", "dtype=float32",
        "progress=false", "disk_headroom_gb=0",
    ])
    generate(cache)
    cached_x = torch.cat(list(open_cache(tmp_path / "c" / MLP_IN).batches(4096, shuffle=False)))
    cached_y = torch.cat(list(open_cache(tmp_path / "c" / MLP_OUT).batches(4096, shuffle=False)))
    assert len(live_x) == len(cached_x) // 100 * 100  # one epoch: every kept token, the tail batch dropped
    r_in, r_out = torch.randn(live_x.shape[1]), torch.randn(live_y.shape[1])
    by_row = lambda x, y: sorted(zip((x @ r_in).tolist(), (y @ r_out).tolist()))  # rows as random projections
    live, cached = by_row(live_x, live_y), dict(by_row(cached_x, cached_y))
    for s_in, s_out in live:
        match = min(cached, key=lambda c: abs(c - s_in))
        assert abs(match - s_in) < 1e-4 and abs(cached[match] - s_out) < 1e-4  # pairs stay aligned

    cfg = load_config(TrainConfig, None, [
        f"output_dir={tmp_path / 'live'}", "total_tokens=5120", "batch_size=256", "progress=false",
        "checkpoint_every=0", "dictionary.kind=topk", "dictionary.d_sae=64", "dictionary.k=4",
        f"on_the_fly.model.name={model_dir}", "on_the_fly.model.device=cpu", f"on_the_fly.hook={MLP_IN}",
        f"on_the_fly.target_hook={MLP_OUT}", f"on_the_fly.data.path={dataset_file}",
        "on_the_fly.data.context_size=32", "on_the_fly.shuffle_tokens=1024",
    ])
    train(cfg)
    loaded = Dictionary.from_pretrained(tmp_path / "live")
    assert loaded.transcoder and (loaded.d_in, loaded.d_out) == (widths[MLP_IN], widths[MLP_OUT])
    meta = json.loads((tmp_path / "live" / "config.json").read_text())["source"]
    assert meta["on_the_fly"] and (meta["hook_in"], meta["hook_out"]) == (MLP_IN, MLP_OUT)


def test_cache_and_on_the_fly_are_exclusive(tmp_path, model_dir, dataset_file):
    with pytest.raises(ConfigError, match="either `cache`"):
        config(tmp_path, tmp_path / "x", f"on_the_fly.model.name={model_dir}", "on_the_fly.hook=h",
               f"on_the_fly.data.path={dataset_file}")


def test_wandb_offline_run_gets_the_log_records(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    batches = [torch.randn(64, 8) for _ in range(4)]
    cfg = TrainConfig.model_validate(dict(
        dictionary={"kind": "topk", "d_sae": 16, "k": 2}, output_dir=tmp_path / "sae", total_tokens=256,
        batch_size=64, log_every=2, progress=False, wandb_project="lm-saes-test", device="cpu",
    ))
    train(cfg, batches=batches)
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    records = (runs[0] / f"run-{runs[0].name.split('-')[-1]}.wandb").read_bytes()  # the run's protobuf log
    for key in (b"explained_variance", b"dead_fraction", b"tokens_per_s", b"lm-saes-test"):
        assert key in records


def test_a_checkpoint_over_data_of_another_width_is_refused(tmp_path):
    def cfg(steps):
        return TrainConfig.model_validate(dict(
            dictionary={"kind": "topk", "d_sae": 16, "k": 2}, output_dir=tmp_path, total_tokens=64 * steps,
            batch_size=64, checkpoint_every=2, progress=False, device="cpu",
        ))

    narrow = [torch.randn(64, 8) for _ in range(3)]
    with pytest.raises(LmSaesError, match="ended after 3 of 4 steps"):
        train(cfg(4), batches=narrow)  # leaves a checkpoint at step 2
    with pytest.raises(ConfigError, match=r"another width .*W_enc \(8, 16\) -> \(12, 16\)"):
        train(cfg(4), batches=[torch.randn(64, 12) for _ in range(4)])


@pytest.mark.slow
def test_overwrite_killed_mid_run_leaves_the_old_dictionary_loadable_and_resumes(cache_root, tmp_path):
    out = tmp_path / "sae"
    train(config(cache_root, out, "total_tokens=2560"))
    old = Dictionary.from_pretrained(out).state_dict()
    args = [a for a in overrides(cache_root, out, "total_tokens=64000", "seed=1", "overwrite=true")
            if not a.startswith("checkpoint_every")]  # the default: a checkpoint every tenth of the run
    cmd = [sys.executable, "-m", "lm_saes", "train"] + [x for a in args for x in ("--set", a)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    staged = staging_dir(out)
    deadline = time.monotonic() + 300
    while not checkpoint_path(staged).is_file():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kept = Dictionary.from_pretrained(out).state_dict()  # the finished dictionary is still whole
    assert all(torch.equal(kept[k], old[k]) for k in old)
    state, _ = load_checkpoint(staged, torch.device("cpu"))
    assert 0 < state["step"] < 250
    result = train(load_config(TrainConfig, None, args))  # the same command again: resumes the replacement
    assert result.resumed_from_step == state["step"] and not staged.exists()
    assert json.loads((out / "artifact.json").read_text())["config"]["seed"] == 1
    assert not torch.equal(Dictionary.from_pretrained(out).W_dec, old["W_dec"])


def test_a_run_that_fails_before_its_first_checkpoint_leaves_no_directory(tmp_path):
    batches = [torch.randn(64, 16) for _ in range(30)]
    batches[1][0, 0] = float("nan")  # diverges at step 2, before the first checkpoint (step 3)
    cfg = TrainConfig.model_validate(dict(
        dictionary={"kind": "topk", "d_sae": 32, "k": 4}, output_dir=tmp_path / "out", total_tokens=64 * 30,
        batch_size=64, log_every=5, progress=False, normalization_batches=1, lr_warmup_steps=1,
    ))
    with pytest.raises(TrainingDiverged):
        train(cfg, batches=batches)
    assert not (tmp_path / "out").exists()


def test_a_manifest_with_a_wrong_sha256_fails_train_naming_the_shard(cache_root, tmp_path, capsys):
    from lm_saes.cli import main

    hook = tmp_path / "edited" / RESID
    shutil.copytree(cache_root / RESID, hook)
    manifest = json.loads((hook / "manifest.json").read_text())
    manifest["shards"][0]["sha256"] = "f" * 64
    (hook / "manifest.json").write_text(json.dumps(manifest))
    args = overrides(cache_root, tmp_path / "sae", f"cache={hook}")
    assert main(["train", *[x for a in args for x in ("--set", a)]]) == 2
    err = capsys.readouterr().err
    assert f"{hook / manifest['shards'][0]['file']} does not match the sha256" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "sae").exists()
