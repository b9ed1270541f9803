"""`lm-saes sweep` of SPD decompositions of TMS 5-2: members trained together equal members trained
alone, resume after SIGKILL, the table, Pareto plot, heatmaps and record, and the errors."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lm_saes.config import StoreConfig, validate_config
from lm_saes.errors import ConfigError
from lm_saes.spd.train import train_spd
from lm_saes.store import open_store
from lm_saes.store.embedded import stop_server
from lm_saes.sweep.config import SweepConfig
from lm_saes.sweep.members import expand_members
from lm_saes.sweep.run import run_sweep
from lm_saes.sweep.spd import row_metrics
from lm_saes.training.checkpoint import checkpoint_path

ROOT = Path(__file__).resolve().parents[2]


def sweep_data(toy: Path, out: Path, **extra) -> dict:
    """Importance coefficient x p (4 members of 20 steps) on TMS 5-2."""
    data = {
        "name": "spd-tiny", "output_dir": str(out), "record": False, "progress": False,
        "train": {"steps": 20, "batch_size": 128, "log_every": 10, "checkpoint_every": 5, "device": "cpu",
                  "eval_examples": 256, "eval_batch_size": 256, "seed": 0,
                  "target": {"kind": "toy", "path": str(toy)},
                  "spd": {"C": 8, "modules": ["linear1", "linear2"], "tie": [["linear1", "linear2"]],
                          "importance_coefficient": 3e-3, "faithfulness_warmup_steps": 5}},
        "grid": {"spd.importance_coefficient": [1e-3, 1e-2], "spd.p": [1.0, 2.0]},
    }
    data.update(extra)
    return data


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = load_file(a / "weights.safetensors"), load_file(b / "weights.safetensors")
    assert wa.keys() == wb.keys()
    for name in wa:
        assert torch.equal(wa[name], wb[name]), f"{a.name}: {name} differs"


@pytest.fixture(scope="module")
def reference(tms_5_2_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("spd_sweep")
    cfg = validate_config(SweepConfig, sweep_data(tms_5_2_dir, out))
    return cfg, run_sweep(cfg)


def test_members_trained_together_equal_members_trained_alone(reference, tmp_path):
    cfg, result = reference
    members = expand_members(cfg)
    assert [m.name for m in members] == ["spd-importance_coefficient0.001-p1", "spd-importance_coefficient0.001-p2",
                                         "spd-importance_coefficient0.01-p1", "spd-importance_coefficient0.01-p2"]
    for member in (members[0], members[3]):  # exactly what `lm-saes train` of its config makes
        alone = train_spd(member.train.model_copy(update={"output_dir": tmp_path / member.name}))
        assert_same_weights(member.train.output_dir, alone.output_dir)


def test_the_table_pareto_plot_heatmaps_and_frontier(reference):
    cfg, result = reference
    out, record = cfg.output_dir, result.record
    assert record["x"] == "ci_l0" and record["frontiers"] == {"reconstruction": "reconstruction loss (CI-masked)"}
    assert record["metrics"] == ["ci_l0", "reconstruction", "reconstruction_rounded", "mmcs", "ml2r", "alive",
                                 "faithfulness"]
    assert record["varied"] == ["importance_coefficient", "p"]
    members = record["rows"]
    assert len(members) == 4 and all(r["kind"] == "member" and r["status"] == "finished" for r in members)
    for member, row in zip(expand_members(cfg), members):  # each row is its member's own evaluation
        evaluation = json.loads((member.train.output_dir / "metrics.json").read_text())["eval"]
        assert row["metrics"] == pytest.approx(row_metrics(evaluation))
        assert row["metrics"]["ci_l0"] == pytest.approx(evaluation["ci_l0_total"])
        assert row["metrics"]["reconstruction"] == pytest.approx(evaluation["mse_ci_masked"])
        assert row["metrics"]["mmcs"] == pytest.approx(sum(evaluation["mmcs"].values()) / 2)
    for row in members:  # on the front iff no other member is at most as bad on both axes (lower is better)
        point = (row["metrics"]["ci_l0"], row["metrics"]["reconstruction"])
        dominated = any(o["metrics"]["ci_l0"] <= point[0] and o["metrics"]["reconstruction"] <= point[1]
                        and (o["metrics"]["ci_l0"], o["metrics"]["reconstruction"]) != point for o in members)
        assert ("reconstruction" in row["frontier"]) == (not dominated)
    assert any(row["frontier"] for row in members)
    names = {p.name for p in result.files}
    assert {"results.json", "results.csv", "pareto_reconstruction.png", "pareto_reconstruction.html",
            "heatmap_spd_mmcs.png", "heatmap_spd_ci_l0.png", "heatmap_spd_reconstruction.png"} <= names
    for name in ("pareto_reconstruction.png", "heatmap_spd_mmcs.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(out / "results.csv") as f:
        table = list(csv.DictReader(f))
    assert list(table[0])[:6] == ["name", "kind", "variant", "status", "importance_coefficient", "p"]
    assert float(table[0]["ci_l0"]) == pytest.approx(members[0]["metrics"]["ci_l0"], rel=1e-3)
    assert "CI-L0 vs reconstruction" in (out / "pareto_reconstruction.html").read_text()


@pytest.mark.slow
def test_an_interrupted_sweep_resumes_and_equals_the_uninterrupted_one(reference, tms_5_2_dir, tmp_path):
    cfg, result = reference
    out = tmp_path / "killed"
    config = tmp_path / "sweep.json"
    config.write_text(json.dumps(sweep_data(tms_5_2_dir, out)))
    code = ("import json, sys, time; from lm_saes.config import validate_config; from lm_saes.sweep.config import "
            "SweepConfig; from lm_saes.sweep.run import run_sweep; from lm_saes.spd.trainer import SPDTrainer\n"
            "advance = SPDTrainer.advance\n"
            "def slow(self, *a):\n"
            "    time.sleep(0.02); return advance(self, *a)\n"
            "SPDTrainer.advance = slow\n"
            "run_sweep(validate_config(SweepConfig, json.load(open(sys.argv[1]))))")
    proc = subprocess.Popen([sys.executable, "-c", code, str(config)], stderr=subprocess.PIPE, cwd=tmp_path)
    last = out / "members" / expand_members(cfg)[-1].name
    deadline = time.monotonic() + 180
    while not checkpoint_path(last).is_file():  # every member has a checkpoint (they step in turn)
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (last / "metrics.json").exists()
    again = run_sweep(validate_config(SweepConfig, sweep_data(tms_5_2_dir, out)))
    for member in expand_members(cfg):
        assert_same_weights(member.train.output_dir, out / "members" / member.name)
    assert [r["metrics"] for r in again.record["rows"]] == [r["metrics"] for r in result.record["rows"]]


def test_variants_and_seeds_and_the_record_in_the_store(tms_5_2_dir, tmp_path):
    store = StoreConfig(data_dir=tmp_path / "store", timeout_s=5)
    data = sweep_data(tms_5_2_dir, tmp_path / "s", record=True, store=store.model_dump(mode="json"), seeds=[0, 1],
                      grid={}, variants={"untied": {"set": {"spd.tie": []}}, "tied": {}})
    data["train"]["steps"] = 10
    try:
        result = run_sweep(validate_config(SweepConfig, data))
        with open_store(store) as s:
            stored = s.sweep("spd-tiny")
    finally:
        stop_server(store.data_dir)
    names = ["untied-seed0", "untied-seed1", "tied-seed0", "tied-seed1"]
    assert [r["name"] for r in result.record["rows"]] == names
    members = tmp_path / "s" / "members"
    untied = json.loads((members / "untied-seed0" / "config.json").read_text())
    assert untied["modules"]["linear2"]["tied_to"] is None  # the variant's override reached its members
    assert json.loads((members / "tied-seed1" / "train_config.json").read_text())["seed"] == 1
    w0, w1 = (load_file(members / name / "weights.safetensors") for name in names[2:])
    assert not torch.equal(w0["components.linear1.V"], w1["components.linear1.V"])  # seeds: initialisation, masks
    assert stored["status"] == "complete" and stored["x"] == "ci_l0"
    assert stored["rows"] == result.record["rows"]


@pytest.mark.parametrize("change, message", [
    ({"grid": {"batch_size": [64, 128]}}, "batch_size differs between"),
    ({"analyze": {"settings": {"cache": "x"}}}, "a sweep of SPD decompositions has none"),
])
def test_members_that_cannot_share_a_stream_are_refused(tms_5_2_dir, tmp_path, change, message):
    data = sweep_data(tms_5_2_dir, tmp_path / "s", **change)
    with pytest.raises(ConfigError, match=message):
        run_sweep(validate_config(SweepConfig, data))
    assert not (tmp_path / "s").exists()
