"""`lm-saes compare` of two SPD decompositions: module by module, by U V^T, U and V; live components only."""

import json
from pathlib import Path

import pytest

from lm_saes.cli import main
from lm_saes.compare.config import CompareConfig
from lm_saes.compare.stage import compare_runs
from lm_saes.config import load_config
from lm_saes.spd.config import load_train_config
from lm_saes.spd.train import train_spd

EXAMPLE = Path(__file__).parents[2] / "examples" / "spd_tms_5-2.toml"
MEASURES = ("weight", "U", "V")


def decompose(toy: Path, out: Path, *changes: str) -> Path:
    """examples/spd_tms_5-2.toml, short (60 steps)."""
    return train_spd(load_train_config(EXAMPLE, [
        f"target.path={toy}", f"output_dir={out}", "steps=60", "batch_size=128", "log_every=20",
        "spd.faithfulness_warmup_steps=20", "eval_examples=512", "eval_batch_size=256", "progress=false",
        "device=cpu", *changes])).output_dir


def compare(a: Path, b: Path, out: Path, *settings: str):
    return compare_runs(load_config(CompareConfig, None, [f"a={a}", f"b={b}", f"output_dir={out}", "device=cpu",
                                                          *settings]))


@pytest.fixture(scope="module")
def short(tms_5_2_dir, tmp_path_factory) -> Path:
    return decompose(tms_5_2_dir, tmp_path_factory.mktemp("spd") / "short")


def test_a_decomposition_compared_with_itself_gives_mmcs_1(short, tmp_path):
    record = compare(short, short, tmp_path / "self").record
    assert record["kind"] == "decompositions" and list(record["modules"]) == ["linear1", "linear2"]
    for module in ("linear1", "linear2"):
        for measure in MEASURES:
            s = record["summary"][module][measure]
            assert (s["n_a"], s["n_b"]) == (20, 20)
            assert s["mmcs_a_to_b"] == pytest.approx(1.0, abs=1e-5) and s["mmcs_b_to_a"] == pytest.approx(1.0, abs=1e-5)
            matches = record["modules"][module][measure]["a_to_b"]["matches"]
            if measure == "weight":  # each subcomponent is its own best match (the others are not parallel)
                assert [m["best"] for m in matches] == list(range(20))
    assert (tmp_path / "self" / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_live_only_keeps_the_subcomponents_the_evaluation_counts_alive(short, tmp_path):
    # the evaluation's inputs: its seed, examples and batch size, and the toy's single-feature inputs
    record = compare(short, short, tmp_path / "live", "live_only=true", "examples=512", "batch_size=256").record
    alive = json.loads((short / "metrics.json").read_text())["eval"]["alive"]
    for module in ("linear1", "linear2"):
        assert record["summary"][module]["weight"]["n_a"] == alive[module] < 20
    everything = compare(short, short, tmp_path / "low", "live_only=true", "ci_threshold=0.999999",
                         "examples=512", "batch_size=256").record
    assert everything["summary"]["linear1"]["weight"]["n_a"] <= alive["linear1"]


def _one_line_error(capsys, argv, expected):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert expected in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


def test_a_decomposition_and_a_dictionary_or_another_model_are_one_line_errors(short, tms_5_2_dir, toy_example,
                                                                                 tmp_path, capsys):
    from lm_saes.dictionaries import build_dictionary, dictionary_config

    sae = build_dictionary(dictionary_config({"kind": "topk", "d_sae": 4, "k": 1}), 2, 2).save(tmp_path / "sae")
    _one_line_error(capsys, ["compare", str(short), str(sae), "--set", f"output_dir={tmp_path / 'o'}"],
                    "cannot compare an SPD decomposition with a dictionary")
    first_only = decompose(tms_5_2_dir, tmp_path / "first", "spd.modules=[\"linear1\"]", "spd.tie=[]", "steps=2")
    _one_line_error(capsys, ["compare", str(short), str(first_only), "--set", f"output_dir={tmp_path / 'o'}"],
                    "decompose different models or modules (only in the first: ['linear2']")
    six = toy_example(tmp_path / "tms_6_2", "toy_tms_5-2.toml", "toy.n_features=6", "steps=20", "toy.n_train=256",
                      "toy.n_test=256")
    other = decompose(six, tmp_path / "six", "steps=2")
    _one_line_error(capsys, ["compare", str(short), str(other), "--set", f"output_dir={tmp_path / 'o'}"],
                    "decompose matrices of different shapes (linear1 5x2 vs 6x2")
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_two_seeds_of_tms_5_2_agree_on_their_live_components(tms_5_2_spd, tms_5_2_dir, tmp_path):
    """The session's decomposition (examples/spd_tms_5-2.toml, seed 0) against one of seed 1 (the example
    shortened to 1500 steps with a larger learning rate and importance coefficient, ~20 s): both find the
    five features, so their live subcomponents match one to one (0.9996 both ways when measured)."""
    other = decompose(tms_5_2_dir, tmp_path / "seed1", "seed=1", "steps=1500", "batch_size=256", "lr=3e-3",
                      "spd.importance_coefficient=1e-2", "spd.faithfulness_warmup_steps=200", "log_every=500")
    a = tms_5_2_spd.output_dir
    record = compare(a, other, tmp_path / "cmp", "live_only=true").record
    everything = compare(a, other, tmp_path / "all").record
    for module in ("linear1", "linear2"):
        s = record["summary"][module]["weight"]
        assert (s["n_a"], s["n_b"]) == (5, 5), s
        assert s["mmcs_a_to_b"] > 0.995 and s["mmcs_b_to_a"] > 0.995, s
        assert everything["summary"][module]["weight"]["mmcs_a_to_b"] < s["mmcs_a_to_b"]  # dead ones match nothing
