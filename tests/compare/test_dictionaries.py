"""`lm-saes compare` of two dictionaries: decoder directions matched both ways, on real weight files."""

import json

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from lm_saes.activations.generate import generate
from lm_saes.cli import main
from lm_saes.compare.config import CompareConfig
from lm_saes.compare.stage import PLOT_NAME, RESULT_NAME, compare_runs
from lm_saes.config import GenerateConfig, TrainConfig, load_config
from lm_saes.dictionaries import build_dictionary, dictionary_config
from lm_saes.errors import ConfigError
from lm_saes.training.train import train


def _saved(directory, W_dec, W_enc=None, b_enc=None):
    """A ReLU dictionary with these weights (encoder: W_dec^T unless given), saved as config.json +
    weights.safetensors."""
    W_dec = torch.tensor(W_dec)
    d = build_dictionary(dictionary_config({"kind": "relu", "d_sae": W_dec.shape[0], "l1_coefficient": 1.0}),
                         W_dec.shape[1], W_dec.shape[1])
    with torch.no_grad():
        d.W_dec.copy_(W_dec)
        d.W_enc.copy_(torch.tensor(W_enc) if W_enc is not None else W_dec.T)
        d.b_enc.copy_(torch.tensor(b_enc) if b_enc is not None else torch.zeros(W_dec.shape[0]))
    return d.save(directory)


def _compare(a, b, out, *settings):
    return compare_runs(load_config(CompareConfig, None, [f"a={a}", f"b={b}", f"output_dir={out}", "device=cpu",
                                                          *settings]))


def test_hand_set_decoders_give_the_hand_computed_mmcs(tmp_path):
    a = _saved(tmp_path / "a", [[1.0, 0.0], [0.0, 2.0]])
    b = _saved(tmp_path / "b", [[3.0, 0.0], [0.6, 0.8], [-1.0, 0.0]])
    result = _compare(a, b, tmp_path / "ab")
    summary = result.record["summary"]["decoder"]["direction"]
    # a0 -> b0 (1), a1 -> b1 (0.8); b0 -> a0 (1), b1 -> a1 (0.8), b2 -> a1 (0 > -1)
    assert summary["mmcs_a_to_b"] == pytest.approx(0.9) and summary["mmcs_b_to_a"] == pytest.approx(0.6)
    on_disk = json.loads((tmp_path / "ab" / RESULT_NAME).read_text())
    assert on_disk["summary"] == result.record["summary"] and (tmp_path / "ab" / PLOT_NAME).stat().st_size > 1000
    assert [m["best"] for m in on_disk["modules"]["decoder"]["direction"]["b_to_a"]["matches"]] == [0, 1, 1]


@pytest.fixture(scope="module")
def two_saes(tmp_path_factory):
    """Two TopK SAEs of different sizes trained on one synthetic cache (48 true features in 12 dims)."""
    root = tmp_path_factory.mktemp("saes")
    cache = generate(load_config(GenerateConfig, None, [
        f"output_dir={root / 'cache'}", "progress=false", "disk_headroom_gb=0", "dtype=float32",
        "synthetic.n_features=48", "synthetic.d_model=12", "synthetic.n_tokens=8192", "synthetic.seed=3",
        "synthetic.mean_active=3.0",
    ])).caches["synthetic"]
    dirs = []
    for d_sae in (16, 48):
        cfg = TrainConfig.model_validate({"dictionary": {"kind": "topk", "d_sae": d_sae, "k": 3}, "cache": str(cache),
                                          "output_dir": str(root / f"topk{d_sae}"), "total_tokens": 8192,
                                          "batch_size": 512, "progress": False, "device": "cpu"})
        dirs.append(train(cfg).output_dir)
    return cache, dirs


def test_two_saes_of_different_sizes_match_a_hand_computation_on_their_weights(tmp_path, two_saes):
    cache, (small, large) = two_saes
    result = _compare(small, large, tmp_path / "c")
    s = result.record["summary"]["decoder"]["direction"]
    w_small, w_large = (load_file(d / "weights.safetensors")["W_dec"].astype(np.float64) for d in (small, large))
    unit_small = w_small / np.linalg.norm(w_small, axis=1, keepdims=True)
    unit_large = w_large / np.linalg.norm(w_large, axis=1, keepdims=True)
    cos = unit_small @ unit_large.T  # [16, 48]
    assert (s["n_a"], s["n_b"]) == (16, 48)
    assert s["mmcs_a_to_b"] == pytest.approx(cos.max(1).mean(), abs=1e-5)
    assert s["mmcs_b_to_a"] == pytest.approx(cos.max(0).mean(), abs=1e-5)
    assert 0 < s["mmcs_b_to_a"] < 1 and 0 < s["mmcs_a_to_b"] < 1

    itself = _compare(small, small, tmp_path / "self")
    assert itself.record["summary"]["decoder"]["direction"]["mmcs_a_to_b"] == pytest.approx(1.0, abs=1e-6)
    assert itself.record["summary"]["decoder"]["direction"]["mmcs_b_to_a"] == pytest.approx(1.0, abs=1e-6)


def test_live_only_leaves_out_latents_that_never_fire(tmp_path, two_saes):
    cache, _ = two_saes
    w = torch.eye(12)[:3].tolist()
    a = _saved(tmp_path / "a", w, b_enc=[0.0, 0.0, -1e6])  # latent 2 never fires
    b = _saved(tmp_path / "b", w)
    result = _compare(a, b, tmp_path / "ab", "live_only=true", f"cache={cache}", "examples=2048")
    s = result.record["summary"]["decoder"]["direction"]
    assert (s["n_a"], s["n_b"]) == (2, 3)
    assert [m["index"] for m in result.record["modules"]["decoder"]["direction"]["a_to_b"]["matches"]] == [0, 1]
    assert s["mmcs_a_to_b"] == pytest.approx(1.0) and s["mmcs_b_to_a"] == pytest.approx((1 + 1 + 0) / 3)
    with pytest.raises(Exception, match="does not record its training cache; set `cache`"):
        _compare(a, b, tmp_path / "ab2", "live_only=true")


def test_a_rerun_replaces_the_comparison_and_other_artifacts_are_refused(tmp_path):
    a = _saved(tmp_path / "a", [[1.0, 0.0]])
    b = _saved(tmp_path / "b", [[0.0, 1.0]])
    _compare(a, b, tmp_path / "out")
    again = _compare(a, a, tmp_path / "out").record
    assert again["summary"]["decoder"]["direction"]["mmcs_a_to_b"] == pytest.approx(1)
    assert json.loads((tmp_path / "out" / RESULT_NAME).read_text())["b"] == str(a.resolve())  # replaced
    with pytest.raises(ConfigError, match="holds files that no lm-saes stage recorded"):
        _compare(a, b, tmp_path / "a")


def _one_line_error(capsys, argv, expected):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert expected in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


def test_dictionaries_of_different_d_model_are_a_one_line_error(tmp_path, capsys):
    a = _saved(tmp_path / "a", [[1.0, 0.0]])
    b = _saved(tmp_path / "b", [[1.0, 0.0, 0.0]])
    _one_line_error(capsys, ["compare", str(a), str(b), "--set", f"output_dir={tmp_path / 'o'}"],
                    "cannot compare dictionaries of different d_model")
    _one_line_error(capsys, ["compare", str(a), str(tmp_path / "nowhere")], "no such directory")
    assert not (tmp_path / "o").exists()


def test_the_command_prints_mmcs_both_ways(tmp_path, capsys):
    a = _saved(tmp_path / "a", [[1.0, 0.0], [0.0, 2.0]])
    b = _saved(tmp_path / "b", [[3.0, 0.0], [0.6, 0.8], [-1.0, 0.0]])
    assert main(["compare", str(a), str(b), "--set", f"output_dir={tmp_path / 'o'}", "--set", "device=cpu"]) == 0
    out = capsys.readouterr().out
    assert "decoder" in out and "0.9000" in out and "0.6000" in out and str(tmp_path / "o" / RESULT_NAME) in out
