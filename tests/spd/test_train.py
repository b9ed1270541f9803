"""`lm-saes train` of SPD configs on toys: TMS 5-2 reproduced, the directory and its load API, exact resume
after SIGKILL, the NaN guard, the artifact rule, and clear errors for bad inputs."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lm_saes.cli import main
from lm_saes.errors import ConfigError, ModelError
from lm_saes.spd import load_decomposition
from lm_saes.spd.config import load_train_config
from lm_saes.spd.train import train_spd
from lm_saes.toys.tms import sample
from lm_saes.training.checkpoint import checkpoint_path, load_checkpoint
from lm_saes.training.loop import TrainingDiverged

EXAMPLE = Path(__file__).parents[2] / "examples" / "spd_tms_5-2.toml"


def small(toy: Path, out: Path, *changes: str) -> list[str]:
    """examples/spd_tms_5-2.toml, short: overrides for load_train_config."""
    return [f"target.path={toy}", f"output_dir={out}", "steps=60", "batch_size=128", "log_every=20",
            "spd.faithfulness_warmup_steps=20", "eval_examples=512", "progress=false", "device=cpu", *changes]


def log_lines(directory: Path) -> list[dict]:
    return [json.loads(line) for line in (directory / "train_log.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_tms_5_2_is_decomposed_into_its_five_features(tms_5_2_spd):
    """The paper's result (MMCS 1.000, ML2R 0.993): one live subcomponent per feature in each matrix."""
    result = tms_5_2_spd  # examples/spd_tms_5-2.toml in full (tests/conftest.py)
    m = result.metrics
    for matrix in ("linear1", "linear2"):
        assert m["mmcs"][matrix] >= 0.999, m
        assert 0.98 <= m["ml2r"][matrix] <= 1.02, m
        assert m["alive"][matrix] == 5, m  # causal importance above 0.1 on some input: exactly the 5 features
        assert m["identity_ci_error"][matrix] <= 10  # out of 5 x 20 entries
    assert m["faithfulness"] < 1e-3 and m["mse_ci_masked"] < 2e-3  # the target's own MSE on its labels is ~0.002

    spd = load_decomposition(result.output_dir)  # the two-line API
    assert spd.modules == ["linear1", "linear2"]
    parts = spd.subcomponents("linear1")
    assert parts.V.shape == (5, 20) and parts.U.shape == (20, 2) and parts.matrices.shape == (20, 5, 2)
    torch.testing.assert_close(spd.subcomponents("linear2").U, parts.V.T)  # tied
    singles = torch.eye(5) * 0.75
    ci = spd.causal_importances(singles)["linear1"]  # [5 features, 20]
    alive = ci.amax(0) > 0.1
    assert int(alive.sum()) == 5 and sorted(ci[:, alive].argmax(1).tolist()) == [0, 1, 2, 3, 4]
    x = sample(spd.target.toy.config, 2048, torch.Generator().manual_seed(5)).features
    masked = spd.masked_forward(x, spd.causal_importances(x))  # each matrix scaled by its causal importances
    assert float((masked - spd(x)).pow(2).mean()) < 1e-3  # as close to the target as its own fit to the labels

    assert main(["eval", str(result.output_dir), "--set", "examples=1024", "--set", "device=cpu"]) == 0
    stored = json.loads((result.output_dir / "metrics.json").read_text())
    assert stored["eval"]["alive"] == {"linear1": 5, "linear2": 5} and stored["final_batch"]["step"] == 5000


def test_a_run_writes_the_decomposition_directory(tms_5_2_dir, tmp_path, capsys):
    out = tmp_path / "spd"
    assert main(["train", str(EXAMPLE), *[x for a in small(tms_5_2_dir, out) for x in ("--set", a)]]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"{out}: CI-L0 ") and "MMCS" in printed
    assert {p.name for p in out.iterdir()} == {"artifact.json", "config.json", "weights.safetensors",
                                              "train_config.json", "train_log.jsonl", "metrics.json"}
    record = json.loads((out / "config.json").read_text())
    assert record["format"] == "spd" and record["output_loss"] == "mse" and record["target"]["kind"] == "toy"
    assert record["modules"]["linear2"] == {"module": "linear2", "kind": "linear", "d_in": 2, "d_out": 5, "C": 20,
                                            "tied_to": "linear1"}
    weights = load_file(out / "weights.safetensors")
    assert weights["components.linear1.V"].shape == (5, 20) and weights["importance.linear2.weight.0"].shape == (20, 1, 16)
    assert torch.equal(weights["components.linear2.U"], weights["components.linear1.V"].T)
    assert [r["step"] for r in log_lines(out)] == [20, 40, 60]
    assert set(log_lines(out)[0]) >= {"loss", "stochastic_recon", "layerwise_recon", "importance_minimality",
                                     "faithfulness", "ci_l0", "ci_l0/linear1", "lr", "p"}
    assert json.loads((out / "artifact.json").read_text())["kind"] == "decomposition"
    assert main(["train", str(EXAMPLE), *[x for a in small(tms_5_2_dir, out, "lr=2e-3") for x in ("--set", a)]]) == 2
    assert "different config (fields ['lr'] differ); set overwrite=true" in capsys.readouterr().err


@pytest.mark.slow
def test_killed_training_resumes_to_identical_weights(tms_5_2_dir, tmp_path):
    args = small(tms_5_2_dir, tmp_path / "ref", "steps=400", "checkpoint_every=25", "log_every=25")
    train_spd(load_train_config(EXAMPLE, args))
    killed = [a if not a.startswith("output_dir=") else f"output_dir={tmp_path / 'killed'}" for a in args]
    cmd = [sys.executable, "-m", "lm_saes", "train", str(EXAMPLE)] + [x for a in killed for x in ("--set", a)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not checkpoint_path(tmp_path / "killed").is_file():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    state, _ = load_checkpoint(tmp_path / "killed", torch.device("cpu"))
    assert 0 < state["step"] < 400
    result = train_spd(load_train_config(EXAMPLE, killed))
    assert result.resumed_from_step == state["step"]
    a, b = load_file(tmp_path / "ref" / "weights.safetensors"), load_file(tmp_path / "killed" / "weights.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("examples_per_s", "input_wait")} for r in rows]
    assert strip(log_lines(tmp_path / "killed")) == strip(log_lines(tmp_path / "ref"))


def test_a_diverging_run_stops_with_a_clear_error(tms_5_2_dir, tmp_path):
    with pytest.raises(TrainingDiverged, match="NaN or infinite .*Lower `lr` or spd.importance_coefficient"):
        train_spd(load_train_config(EXAMPLE, small(tms_5_2_dir, tmp_path / "nan", "lr=1e30", "steps=20",
                                                   "spd.faithfulness_warmup_steps=0")))


def test_bad_inputs_are_one_line_errors(tms_5_2_dir, tmp_path, capsys):
    def fails(*changes: str) -> str:
        code = main(["train", str(EXAMPLE), *[x for a in small(tms_5_2_dir, tmp_path / "x", *changes)
                                              for x in ("--set", a)]])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
        return err

    assert "'hidden' matches no module of the model; its decomposable modules are: linear1 (linear), linear2 " \
           "(linear)" in fails('spd.modules=["hidden"]', "spd.tie=[]")
    assert "C=0: each decomposed matrix needs at least one subcomponent" in fails("spd.C=0")
    assert "no toy directory there; train the toy first with `lm-saes toy CONFIG`" in fails(
        f"target.path={tmp_path / 'missing'}")
    assert "'dictionary' is a sparse-dictionary field" in fails("dictionary.kind=topk")
    assert not (tmp_path / "x").exists()  # nothing was written
    with pytest.raises(ModelError, match="no Hugging Face model directory there"):
        train_spd(load_train_config(None, [
            "target.kind=language_model", f"target.model.name={tmp_path / 'no_model'}", "target.data.path=x.jsonl",
            f"output_dir={tmp_path / 'lm'}", "steps=1", "batch_size=1", "spd.C=2", 'spd.modules=["*"]',
            "spd.importance_coefficient=1"]))
    with pytest.raises(ConfigError, match="spd.tie names \\['linear2'\\], which are not decomposed"):
        train_spd(load_train_config(EXAMPLE, small(tms_5_2_dir, tmp_path / "y", 'spd.modules=["linear1"]')))
