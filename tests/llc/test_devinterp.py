"""Our LLC equals devinterp 2.0.1's on the same model, data, hyperparameters and seed, within the
chains' noise. devinterp runs from .venv-peers (scripts/peers.sh) in a subprocess: devinterp_peer.py."""

import json
import math
import statistics
import subprocess
from pathlib import Path

import pytest
import torch

from lm_saes.llc.config import SGLDConfig
from lm_saes.llc.sources import toy_source
from lm_saes.llc.stage import sample
from lm_saes.toys.directory import load_toy

REPO = Path(__file__).resolve().parents[2]
PEERS_PYTHON = REPO / ".venv-peers" / "bin" / "python"
PEER_SCRIPT = Path(__file__).with_name("devinterp_peer.py")


def require_peers(python: Path = PEERS_PYTHON) -> Path:
    """The peers' interpreter; a missing one fails the test, since the equality is then unchecked."""
    if not python.is_file():
        pytest.fail(f"{python} is missing: run `bash scripts/peers.sh` to create .venv-peers "
                    "(devinterp 2.0.1 beside lm-saes), then rerun this test", pytrace=False)
    return python


@pytest.mark.slow
def test_our_estimate_equals_devinterps_within_chain_noise(modular_addition_dir, tmp_path):
    python = require_peers()
    n = toy_source(load_toy(modular_addition_dir), torch.device("cpu")).examples
    settings = {"step_size": 1e-4, "localization": 100.0, "nbeta": n / math.log(n), "chains": 8, "draws": 150,
                "batch_size": 128, "seed": 0}
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"toy": str(modular_addition_dir), "out": str(tmp_path / "out.json"), "sgld": settings}))
    run = subprocess.run([str(python), str(PEER_SCRIPT), str(job)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, f"devinterp_peer.py failed:\n{run.stderr[-4000:]}"
    theirs = json.loads((tmp_path / "out.json").read_text())
    # devinterp averages every step (no burn-in) and draws no MALA diagnostic: the same here.
    ours = sample(toy_source(load_toy(modular_addition_dir), torch.device("cpu")),
                  SGLDConfig(**settings, burn_in=0.0, mala_every=0), progress=False)
    their_stderr = statistics.stdev(theirs["llc_per_chain"]) / math.sqrt(settings["chains"])
    noise = math.hypot(ours.llc_stderr, their_stderr)
    assert abs(ours.llc_mean - theirs["llc_mean"]) < 3 * noise, (ours.llc_mean, theirs["llc_mean"], noise)
    assert noise < 0.05 * theirs["llc_mean"]  # tight enough for the comparison to mean something
    assert ours.init_loss == pytest.approx(theirs["init_loss"], rel=0.05)  # the same w* and data
    assert len(theirs["loss_trace"]) == settings["chains"] and len(theirs["loss_trace"][0]) == settings["draws"]


def test_missing_peers_fail_with_the_fix(tmp_path):
    with pytest.raises(pytest.fail.Exception, match="bash scripts/peers.sh"):
        require_peers(tmp_path / "nope" / "python")
