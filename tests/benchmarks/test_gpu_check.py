"""benchmarks/gpu_check.sh in --smoke mode: every benchmark runs at tiny shapes on the CPU, and the
table names every performance target of PERF.md with a figure or the reason it has none."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TARGETS = [  # a piece of the measure of each target's row
    "lm-saes / sparsify tokens/s", "(PERF.md target)", "(30% of the encoder ceiling)", "explained variance after",
    "batchtopk tokens/s", "jumprelu tokens/s", "relu tokens/s", "TopK d=85",
    "training from the page-cached cache", "reader / gathering from memory", "reader GB/s",
    "generation / min(model forward, disk)", "sweep of 2 together", "analysis time / the encoder's own pass",
    "topk d=32 m=256 k=8: sparse_backward flipped / default", "batchtopk d=32 m=256 k=8: sparse_backward flipped",
    "SPD", "LLC", "training from a cold cache", "tokens each system needs",
]


@pytest.mark.slow
def test_smoke_run_measures_every_target_or_says_why_not(tmp_path):
    out = tmp_path / "check.json"
    done = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--smoke", "--out", str(out)], cwd=REPO,
                          env={**os.environ, "LM_SAES_PYTHON": sys.executable}, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["smoke"] and result["device"].startswith("cpu")
    rows = result["rows"]
    for target in TARGETS:
        assert any(target in r["measure"] for r in rows), target
    for r in rows:
        assert r["status"] in ("pass", "FAIL", "info") or r["status"].startswith(("info (", "not measured: ")), r
        assert r["figure"] is not None or r["status"].startswith("not measured: "), r
        assert r["measure"] in done.stdout  # the printed table holds every row
    # Every benchmark that exists ran to the end and was understood: none has rotted.
    assert {name: run["status"] for name, run in result["runs"].items()} == {
        "train_d768": "ok", "train_d2048": "ok", "train_from_cache": "ok", "read": "ok", "generate": "ok",
        "sweep": "ok", "sweep_small": "ok", "train_twins": "ok", "analyze": "ok",
        "spd": "ok" if (REPO / "benchmarks" / "spd.py").exists() else "absent",
        "llc": "ok" if (REPO / "benchmarks" / "llc.py").exists() else "absent",
    }
    peers = {r["measure"].split("/ ")[1].split()[0]: r for r in rows if "TopK d=32" in r["measure"] and "lm-saes / " in r["measure"]}
    for name in ("sparsify", "sae_lens"):  # measured where .venv-peers has it, else the table says it is missing
        assert peers[name]["peer_figure"] or "not importable" in peers[name]["status"], peers[name]
