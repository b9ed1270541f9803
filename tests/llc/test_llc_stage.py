"""`lm-saes llc` (lm_saes/llc/stage.py): the files it writes, reuse and refusals, diverging chains,
the estimate over checkpoints, and the LLC ordering of structured against random-label models."""

import json
import math

import pytest

from lm_saes.cli import main
from lm_saes.errors import ConfigError, LmSaesError
from lm_saes.llc.config import LLCConfig
from lm_saes.llc.stage import LLCDiverged, run_llc

SGLD = {"step_size": 1e-4, "localization": 100.0, "nbeta": "dataset", "chains": 8, "draws": 300, "batch_size": 128}


def config(model, out, **changes) -> LLCConfig:
    sgld = {**SGLD, **changes.pop("sgld", {})}
    return LLCConfig.model_validate({"model": model, "output_dir": out, "sgld": sgld, "progress": False, **changes})


@pytest.fixture(scope="module")
def structured(modular_addition_dir, tmp_path_factory):
    return run_llc(config(modular_addition_dir, tmp_path_factory.mktemp("llc") / "structured"))


@pytest.mark.slow
def test_an_estimate_writes_its_record_and_plots(structured, modular_addition_dir):
    out = structured.output_dir
    assert sorted(p.name for p in out.iterdir()) == ["artifact.json", "config.json", "fourier_norms.png", "llc.json",
                                                     "llc_traces.png"]
    assert [p.name for p in structured.files][-1] == "llc.json" and not structured.reused
    record = json.loads((out / "llc.json").read_text())
    assert record["artifact"] == "llc" and record["kind"] == "toy" and record["examples"] == 2668
    llc = record["llc"]
    assert llc["nbeta"] == pytest.approx(2668 / math.log(2668))
    assert llc["mean"] == pytest.approx(sum(llc["per_chain"]) / 8) and llc["mean"] > 0
    assert llc["stderr"] == pytest.approx(llc["std"] / math.sqrt(8)) and llc["diverged_chains"] == []
    assert 0.8 < llc["mala_acceptance"] <= 1.0
    assert len(record["loss_trace"]) == 8 and len(record["loss_trace"][0]) == len(record["init_loss_trace"]) == 300
    fourier = record["fourier"]
    assert fourier["key_frequencies"] and fourier["ablated_to_key_frequencies"]["test"]["accuracy"] > 0.95
    assert json.loads((out / "config.json").read_text())["artifact"] == "llc"


@pytest.mark.slow
def test_a_random_label_model_has_a_larger_llc_than_the_structured_one(structured, random_labels_dir, tmp_path):
    memorising = run_llc(config(random_labels_dir, tmp_path / "random")).record["llc"]
    grokked = structured.record["llc"]
    assert memorising["mean"] - grokked["mean"] > 5 * math.hypot(memorising["stderr"], grokked["stderr"])


@pytest.mark.slow
def test_a_finished_estimate_is_reused_and_another_config_refused(structured, modular_addition_dir):
    again = run_llc(config(modular_addition_dir, structured.output_dir, progress=True))
    assert again.reused and again.record == json.loads((structured.output_dir / "llc.json").read_text())
    with pytest.raises(ConfigError, match="different config \(fields \['sgld'\] differ\); set overwrite=true"):
        run_llc(config(modular_addition_dir, structured.output_dir, sgld={"seed": 1}))


def test_a_diverging_step_size_is_reported_with_its_traces(modular_addition_dir, tmp_path, capsys):
    cfg = config(modular_addition_dir, tmp_path / "diverged", sgld={"step_size": 1.0, "draws": 40, "chains": 2})
    with pytest.raises(LLCDiverged, match=r"SGLD diverged \(chains \[0, 1\].*lower sgld.step_size \(now 1.0\)"):
        run_llc(cfg)
    record = json.loads((tmp_path / "diverged" / "llc.json").read_text())
    assert record["llc"]["mean"] is None and record["llc"]["diverged_chains"] == [0, 1]
    assert None in record["loss_trace"][0] and (tmp_path / "diverged" / "llc_traces.png").is_file()
    with pytest.raises(LLCDiverged):  # the record is reused, and still reported as diverged
        run_llc(cfg)
    args = ["llc", "--set", f"model={modular_addition_dir}", "--set", f"output_dir={tmp_path / 'diverged'}",
            "--set", "progress=false", *(f"--set=sgld.{k}={v}" for k, v in {**SGLD, "step_size": 1.0, "draws": 40,
                                                                           "chains": 2, "nbeta": '"dataset"'}.items())]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "error: SGLD diverged" in err and "Traceback" not in err


def test_bad_model_directories_and_output_dirs_are_refused(modular_addition_dir, trained_dictionary,
                                                         tmp_path):
    with pytest.raises(ConfigError, match="follows a toy's saved checkpoints; .* is a dictionary directory"):
        run_llc(config(trained_dictionary, tmp_path / "dict", checkpoints=True))
    (tmp_path / "mystery").mkdir()
    with pytest.raises(LmSaesError, match="no config.json lm-saes knows; `lm-saes llc` estimates a toy"):
        run_llc(config(tmp_path / "mystery", tmp_path / "out"))
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    for overwrite in (False, True):
        with pytest.raises(ConfigError, match="holds files that no lm-saes stage recorded"):
            run_llc(config(modular_addition_dir, tmp_path / "taken", overwrite=overwrite))
    assert (tmp_path / "taken" / "notes.txt").read_text() == "mine"


@pytest.mark.slow
def test_the_llc_over_checkpoints_beside_train_and_test_loss(modular_addition_dir, tmp_path, capsys):
    args = ["llc", "--checkpoints", "--set", f"model={modular_addition_dir}", "--set", f"output_dir={tmp_path}/ckpt",
            "--set", "progress=false", "--set", "sgld.draws=100", "--set", "sgld.chains=4"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    record = json.loads((tmp_path / "ckpt" / "llc.json").read_text())
    rows = record["checkpoints"]
    assert [r["step"] for r in rows] == [0, 500, 1000, 1500, 2000]
    assert rows[-1]["test_accuracy"] == 1.0 and rows[0]["test_accuracy"] < 0.1
    assert rows[-1]["train_loss"] < rows[0]["train_loss"] and all(r["llc"]["mean"] is not None for r in rows)
    assert len(rows[0]["frequency_norms"]) == 27 and record["fourier"]["key_frequencies"]
    for name in ("llc_checkpoints.png", "fourier_evolution.png", "fourier_norms.png", "llc_traces.png"):
        assert (tmp_path / "ckpt" / name).stat().st_size > 10_000
    assert printed.count("LLC") == 5 and "step    2000: LLC" in printed and "key frequencies" in printed
