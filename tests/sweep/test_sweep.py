"""`lm-saes sweep` end to end on a real cache of the tiny test model: members trained together
equal members trained alone, resume after SIGKILL, a diverging member, the table, plots and record."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lm_saes.config import EvalConfig, StoreConfig, validate_config
from lm_saes.dictionaries import Dictionary
from lm_saes.errors import CacheError, ConfigError, StoreError
from lm_saes.evaluation.run import evaluate
from lm_saes.store import open_store
from lm_saes.store.embedded import stop_server
from lm_saes.sweep.config import SweepConfig
from lm_saes.sweep.members import expand_members
from lm_saes.sweep.run import run_sweep
from lm_saes.training.checkpoint import checkpoint_path
from lm_saes.training.train import train

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def sweep_data(cache: Path, out: Path, **extra) -> dict:
    """Two TopK members (k = 2, 6; 8 steps) and a ReLU member (16 steps) over the tiny cache."""
    data = {
        "name": "tiny", "output_dir": str(out), "record": False, "progress": False,
        "baselines": ["pca", "neurons"], "members_per_stack": 2,  # the TopK pair steps as one stacked model
        "member_workers": 2,  # the TopK stack and the ReLU member step side by side, on two threads
        "train": {"cache": str(cache), "total_tokens": 2048, "batch_size": 128, "lr": 3e-3,
                  "lr_warmup_steps": 2, "log_every": 4, "checkpoint_every": 4, "device": "cpu",
                  "normalization_batches": 2},
        "variants": {
            "topk": {"set": {"dictionary": {"kind": "topk", "d_sae": 64, "k": 4}, "total_tokens": 1024},
                     "grid": {"dictionary.k": [2, 6]}},
            "relu": {"set": {"dictionary": {"kind": "relu", "d_sae": 64, "l1_coefficient": 1.0}}},
        },
        "eval": {"tokens": 1024, "batch_size": 256, "ce_tokens": 256, "ce_batch_size": 8, "device": "cpu"},
    }
    for key, value in extra.items():
        data[key] = value
    return data


def comparable(record: dict) -> list[dict]:
    """The rows of a sweep, without where they were written (two sweeps in two directories)."""
    rows = []
    for row in record["rows"]:
        row = {k: v for k, v in row.items() if k != "dictionary_dir"}
        if "config" in row:
            row["config"] = {k: v for k, v in row["config"].items() if k != "output_dir"}
        rows.append(row)
    return rows


def weights(directory: Path) -> dict[str, torch.Tensor]:
    return Dictionary.from_pretrained(directory).state_dict()


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for name in wa:
        assert torch.equal(wa[name], wb[name]), f"{a.name}: {name} differs"


@pytest.fixture(scope="module")
def reference(sweep_cache, tmp_path_factory):
    """One uninterrupted sweep, shared by the tests that compare against it."""
    out = tmp_path_factory.mktemp("reference")
    cfg = validate_config(SweepConfig, sweep_data(sweep_cache, out))
    return cfg, run_sweep(cfg)


def test_members_trained_together_equal_members_trained_alone(reference, tmp_path):
    cfg, result = reference
    for member in expand_members(cfg):
        alone = train(member.train.model_copy(update={"output_dir": tmp_path / member.name}))
        assert_same_weights(member.train.output_dir, alone.output_dir)
    assert [r["name"] for r in result.record["rows"] if r["kind"] == "member"] == ["topk-k2", "topk-k6", "relu"]
    for member, row in zip(expand_members(cfg), result.record["rows"]):  # the record keeps every config
        assert row["config"] == json.loads((member.train.output_dir / "train_config.json").read_text())


def test_member_metrics_are_lm_saes_evals_and_baselines_sit_at_the_member_l0s(reference):
    cfg, result = reference
    rows = {r["name"]: r for r in result.record["rows"]}
    member = expand_members(cfg)[0]
    stored = json.loads((member.train.output_dir / "metrics.json").read_text())["eval"]
    alone = evaluate(EvalConfig(dictionary=member.train.output_dir, **cfg.eval.model_dump()))
    for key in ("l0", "explained_variance", "mse", "ce_loss_recovered", "kl_spliced", "dead_fraction"):
        assert stored[key] == pytest.approx(alone[key], rel=1e-5, abs=1e-7), key
        assert rows[member.name]["metrics"][key] == pytest.approx(alone[key], rel=1e-5, abs=1e-7), key
    assert rows["topk-k2"]["metrics"]["l0"] == pytest.approx(2.0)
    # The budgets are the members' L0s on their last training batch (known before any member is measured)
    trained = [json.loads((m.train.output_dir / "metrics.json").read_text())["final_batch"] for m in expand_members(cfg)]
    budgets = sorted({round(t["l0"]) for t in trained})
    for method in ("pca", "neurons"):
        assert sorted(r["params"]["l0"] for r in rows.values() if r["variant"] == method) == budgets
        for k in budgets:
            row = rows[f"{method}-l0-{k}"]
            assert row["kind"] == "baseline" and row["metrics"]["l0"] <= k + 1e-6
    # Per-token top-k of the PCA basis beats the same budget of neurons on correlated activations.
    assert rows["pca-l0-2"]["metrics"]["explained_variance"] > rows["neurons-l0-2"]["metrics"]["explained_variance"]


def test_the_table_plots_and_frontier(reference):
    cfg, result = reference
    out = cfg.output_dir
    assert {p.name for p in result.files} == {
        "results.json", "results.csv", "pareto_explained_variance.png", "pareto_explained_variance.html",
        "pareto_ce_loss_recovered.png", "pareto_ce_loss_recovered.html"}
    assert json.loads((out / "results.json").read_text()) == result.record
    with open(out / "results.csv") as f:
        table = list(csv.DictReader(f))
    assert [r["name"] for r in table] == [r["name"] for r in result.record["rows"]]
    assert list(table[0])[:5] == ["name", "kind", "variant", "status", "k"]
    assert float(table[0]["explained_variance"]) == result.record["rows"][0]["metrics"]["explained_variance"]
    for name in ("pareto_explained_variance.png", "pareto_ce_loss_recovered.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out / "pareto_explained_variance.html").read_text()
    assert "<svg" in page and 'id="row-topk-k6"' in page and "#row-topk-k6" in page
    members = [r for r in result.record["rows"] if r["kind"] == "member"]
    for key in ("explained_variance", "ce_loss_recovered"):
        for row in members:  # on the front iff no other member is at least as good on both axes
            dominated = any(o["metrics"]["l0"] <= row["metrics"]["l0"] and o["metrics"][key] >= row["metrics"][key]
                            and o is not row and (o["metrics"]["l0"], o["metrics"][key]) != (row["metrics"]["l0"], row["metrics"][key])
                            for o in members)
            assert (key in row["frontier"]) == (not dominated)
    assert result.record["varied"] == ["k"] and result.record["paths"] == {"k": "dictionary.k"}


def test_an_interrupted_sweep_resumes_without_retraining_and_equals_the_uninterrupted_one(
    reference, sweep_cache, tmp_path
):
    cfg, result = reference
    out = tmp_path / "killed"
    data = sweep_data(sweep_cache, out)
    config = tmp_path / "sweep.json"
    config.write_text(json.dumps(data))
    code = ("import json, sys; from lm_saes.config import validate_config; from lm_saes.sweep.config import SweepConfig;"
            "from lm_saes.sweep.run import run_sweep; from lm_saes.training import trainer;"
            "advance = trainer.Trainer.advance\n"
            "def slow(self, *a):\n"
            "    import time; time.sleep(0.05); return advance(self, *a)\n"
            "trainer.Trainer.advance = slow\n"
            "run_sweep(validate_config(SweepConfig, json.load(open(sys.argv[1]))))")
    proc = subprocess.Popen([sys.executable, "-c", code, str(config)], stderr=subprocess.PIPE, cwd=tmp_path)
    relu = out / "members" / "relu"
    deadline = time.monotonic() + 180
    while not _checkpoint_after(relu, step=8):  # the TopK members (8 steps) have finished
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (relu / "metrics.json").exists()
    finished = out / "members" / "topk-k2" / "weights.safetensors"
    stamp = finished.stat().st_mtime_ns

    again = run_sweep(validate_config(SweepConfig, data))
    for member in expand_members(cfg):
        assert_same_weights(member.train.output_dir, out / "members" / member.name)
    assert comparable(again.record) == comparable(result.record)
    assert finished.stat().st_mtime_ns == stamp  # not trained again


def _checkpoint_after(directory: Path, step: int) -> bool:
    path = checkpoint_path(directory)
    if not path.is_file():
        return False
    try:
        return torch.load(path, weights_only=True)["state"]["step"] > step
    except Exception:  # being replaced right now
        return False


def test_finished_members_are_not_trained_again(reference, sweep_cache, tmp_path):
    cfg, _ = reference
    out = tmp_path / "partial"
    data = sweep_data(sweep_cache, out)
    first = validate_config(SweepConfig, {**data, "variants": {"topk": {**data["variants"]["topk"], "grid": {"dictionary.k": [2]}}}})
    run_sweep(first)
    done = out / "members" / "topk-k2" / "weights.safetensors"
    stamp = done.stat().st_mtime_ns
    second = validate_config(SweepConfig, sweep_data(sweep_cache, out))  # the same member and two more
    result = run_sweep(second)
    assert done.stat().st_mtime_ns == stamp
    assert [r["status"] for r in result.record["rows"] if r["kind"] == "member"] == ["finished"] * 3
    assert_same_weights(out / "members" / "topk-k6", cfg.output_dir / "members" / "topk-k6")


def test_a_finished_member_of_another_config_is_refused_not_reused(reference, sweep_cache, tmp_path):
    cfg, _ = reference
    out = tmp_path / "changed"
    data = sweep_data(sweep_cache, out, variants={"topk": {"set": {"dictionary": {"kind": "topk", "d_sae": 64, "k": 2}}}})
    run_sweep(validate_config(SweepConfig, data))
    data["train"]["lr"] = 1e-3  # not a varied field: the member keeps its name
    with pytest.raises(ConfigError, match=r"sweep member 'topk' .* \(fields \['lr'\] differ\); delete that directory"):
        run_sweep(validate_config(SweepConfig, data))


def test_a_diverging_member_is_marked_failed_and_the_others_finish(sweep_cache, tmp_path):
    data = sweep_data(sweep_cache, tmp_path / "nan", baselines=[])
    data["variants"]["topk"]["grid"] = {"lr": [3e-3, 1e30]}
    data["train"]["normalize_activations"] = False
    result = run_sweep(validate_config(SweepConfig, data))
    rows = {r["name"]: r for r in result.record["rows"]}
    failed = rows["topk-lr1e30"]
    assert failed["status"] == "failed" and "NaN or infinite" in failed["error"] and "metrics" not in failed
    assert rows["topk-lr0.003"]["status"] == "finished" and rows["relu"]["status"] == "finished"
    with open(tmp_path / "nan" / "results.csv") as f:
        assert "NaN or infinite" in {r["name"]: r for r in csv.DictReader(f)}["topk-lr1e30"]["error"]
    again = run_sweep(validate_config(SweepConfig, data))  # a failed member is reported, not retried
    assert {r["name"]: r["status"] for r in again.record["rows"]} == {r: rows[r]["status"] for r in rows}


def test_the_record_lands_in_the_store(sweep_cache, tmp_path):
    store = StoreConfig(data_dir=tmp_path / "store", timeout_s=5)
    data = sweep_data(sweep_cache, tmp_path / "stored", record=True, store=store.model_dump(mode="json"),
                      baselines=[])
    data["variants"] = {"topk": data["variants"]["topk"]}
    data["train"]["total_tokens"] = 512
    try:
        result = run_sweep(validate_config(SweepConfig, data))
        with open_store(store) as s:
            stored = s.sweep("tiny")
            assert [x["name"] for x in s.sweeps()] == ["tiny"]
        assert stored["status"] == "complete"
        assert stored["rows"] == result.record["rows"]
        assert stored["varied"] == ["k"]
    finally:
        stop_server(store.data_dir)


def test_torchrun_ranks_split_the_members_and_equal_one_process(reference, sweep_cache, tmp_path):
    cfg, result = reference
    out = tmp_path / "ranks"
    config = tmp_path / "sweep.json"
    config.write_text(json.dumps(sweep_data(sweep_cache, out)))
    worker = tmp_path / "worker.py"
    worker.write_text("import json, sys\nfrom lm_saes.config import validate_config\n"
                      "from lm_saes.sweep.config import SweepConfig\nfrom lm_saes.sweep.run import run_sweep\n"
                      "run_sweep(validate_config(SweepConfig, json.load(open(sys.argv[1]))))\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2",
                          f"--master-port={port}", str(worker), str(config)],
                         env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-4000:]
    for member in expand_members(cfg):
        assert_same_weights(member.train.output_dir, out / "members" / member.name)
    record = json.loads((out / "results.json").read_text())
    assert comparable(record) == comparable(result.record)


def test_a_store_that_dies_mid_sweep_loses_nothing(sweep_cache, tmp_path, monkeypatch):
    from lm_saes.sweep import run as sweep_run

    store = StoreConfig(data_dir=tmp_path / "store", timeout_s=2)
    data = sweep_data(sweep_cache, tmp_path / "out", record=True, store=store.model_dump(mode="json"), baselines=[])
    data["variants"] = {"topk": data["variants"]["topk"]}
    calls = []
    real = sweep_run._save_record

    def record_then_die(cfg, record):  # the first record (running) lands; the server is gone for the last
        calls.append(record["status"])
        if record["status"] == "complete":
            stop_server(store.data_dir)
            store_cfg = cfg.store.model_copy(update={"mongo_uri": "mongodb://127.0.0.1:1"})
            return real(cfg.model_copy(update={"store": store_cfg}), record)
        return real(cfg, record)

    monkeypatch.setattr(sweep_run, "_save_record", record_then_die)
    try:
        with pytest.raises(StoreError, match="The sweep itself is finished and kept: .*results.json"):
            run_sweep(validate_config(SweepConfig, data))
        assert calls == ["running", "complete"]
        table = json.loads((tmp_path / "out" / "results.json").read_text())
        assert [r["status"] for r in table["rows"]] == ["finished", "finished"]
        monkeypatch.setattr(sweep_run, "_save_record", real)
        again = run_sweep(validate_config(SweepConfig, data))  # the store is back: recorded, nothing retrained
        with open_store(store) as s:
            assert s.sweep("tiny")["rows"] == again.record["rows"]
    finally:
        stop_server(store.data_dir)


def test_a_sweep_of_a_taken_name_from_another_output_dir_is_refused_before_training(sweep_cache, tmp_path):
    from lm_saes.artifacts import directory_identity

    store = StoreConfig(data_dir=tmp_path / "store", timeout_s=5)
    finished = {"output_dir": str(tmp_path / "first"), "status": "complete", "rows": [{"name": "topk-k2"}]}
    try:
        with open_store(store) as s:
            s.upsert_sweep("tiny", finished, identity=directory_identity(tmp_path / "first"))
        data = sweep_data(sweep_cache, tmp_path / "second", record=True, store=store.model_dump(mode="json"))
        with pytest.raises(ConfigError, match=r"already holds a sweep named 'tiny', from .*first.*--set name=.*"
                                              r"--set replace_stored=true"):
            run_sweep(validate_config(SweepConfig, data))
        assert not (tmp_path / "second").exists()  # nothing trained, no directory left
        with open_store(store) as s:
            assert s.sweep("tiny")["status"] == "complete" and s.sweep("tiny")["output_dir"] == finished["output_dir"]
    finally:
        stop_server(store.data_dir)


def test_a_sweep_that_fails_leaves_no_empty_directories(sweep_cache, tmp_path):
    import shutil

    hook = tmp_path / "corrupt" / sweep_cache.name
    shutil.copytree(sweep_cache, hook)
    manifest = json.loads((hook / "manifest.json").read_text())
    manifest["shards"][0]["sha256"] = "0" * 64
    (hook / "manifest.json").write_text(json.dumps(manifest))
    data = sweep_data(hook, tmp_path / "sweep", baselines=[])
    data["train"]["total_tokens"] = 1_000_000  # reads the whole cache: its checksums are verified
    with pytest.raises(CacheError, match="does not match the sha256"):
        run_sweep(validate_config(SweepConfig, data))
    assert not (tmp_path / "sweep").exists()
