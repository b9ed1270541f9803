"""The command layer: exit codes, user errors without tracebacks, the hooks listing."""

import subprocess
import sys

import pytest

from lm_saes.cli import build_parser, main


def test_every_stage_takes_a_config_and_overrides():
    parser = build_parser()
    args = parser.parse_args(["generate", "c.toml", "--set", "a=1", "--set", "b.c=x"])
    assert (args.command, args.config, args.set) == ("generate", "c.toml", ["a=1", "b.c=x"])
    assert parser.parse_args(["pretrain", "--set", "output_dir=x"]).config is None


def test_user_error_prints_message_and_exits_2(tmp_path, capsys):
    code = main(["generate", str(tmp_path / "missing.toml")])
    assert code == 2
    assert "error: config file not found" in capsys.readouterr().err


def test_unknown_field_from_the_command_line(capsys):
    code = main(["generate", "--set", "model.nmae=x"])
    err = capsys.readouterr().err
    assert code == 2 and "unknown field 'model.nmae'; did you mean 'name'?" in err
    assert "Traceback" not in err


def test_hooks_lists_hook_points_with_shapes(model_dir):
    run = subprocess.run(
        [sys.executable, "-m", "lm_saes", "hooks", str(model_dir)], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    assert "blocks.0.hook_resid_post  [1, 3, 32]" in run.stdout
    assert "blocks.0.attn.hook_pattern  [1, 4, 3, 3]" in run.stdout
    assert "blocks.0.hook_mlp_in  (use_hook_mlp_in)" in run.stdout


def test_show_from_a_directory_without_a_store_says_so_and_creates_none(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MONGO_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(["show", "topk"]) == 2
    err = capsys.readouterr().err
    assert f"no analysis store in {tmp_path / 'work' / 'store'}" in err and "--set data_dir=PATH" in err
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # no ./work/store was created


def _one_line_error(capsys, argv: list[str], expected: str) -> None:
    """``argv`` exits with status 2 and one line of stderr holding ``expected``, no traceback."""
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert expected in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


@pytest.mark.parametrize("argv, expected", [
    (["show", "topk", "--limit", "0"], "--limit: 0 is outside [1, 10000]"),
    (["show", "topk", "--limit", "-5"], "--limit: -5 is outside [1, 10000]"),
    (["show", "topk", "--limit", "100000000"], "--limit: 100000000 is outside [1, 10000]"),
    (["show", "topk", "99999999999999999999999"], "feature: 99999999999999999999999 is outside [0, 9223372036854775807]"),
    (["show", "topk", "x7"], "feature: 'x7' is not an integer"),
    (["show", "$where"], "may not start with '$'"),
    (["serve", "--port", "99999"], "--port: 99999 is outside [1, 65535]"),
    (["analyze", "--set", "dictionary_name=$where", "--set", "dictionary=absent", "--set", "cache=absent"],
     "dictionary_name: Value error, a name may not start with '$'"),
    (["analyze", "--set", "name=a/b", "--set", "dictionary=absent", "--set", "cache=absent"], "may not contain ['/']"),
    (["train", "--set", "seed=99999999999999999999999"], "seed: 99999999999999999999999 is beyond the 64-bit"),
    (["train", "--set", "lr=nan"], "lr: nan is not a finite number"),
    (["generate", "--set", "output_dir=\udcff"], "output_dir: '\\\\xff' is not valid UTF-8 text"),
    (["eval", "absent", "--set", "device=banana"], "device: String should match pattern"),
])
def test_bad_arguments_are_one_line_errors_before_any_work(capsys, argv, expected):
    _one_line_error(capsys, argv, expected)


def test_files_where_directories_belong_and_undecodable_configs_are_one_line_errors(tmp_path, capsys):
    afile = tmp_path / "a-file"
    afile.write_text("mine")
    _one_line_error(capsys, ["show", "topk", "--set", f"data_dir={afile}"], "is a file; data_dir must be a directory")
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes('name = "caf\xe9"\n'.encode("latin-1"))
    _one_line_error(capsys, ["pretrain", str(latin1)], "is not valid TOML (UTF-8 text)")
    sae = _tiny_dictionary(tmp_path / "sae")
    _one_line_error(capsys, ["export", str(sae), str(afile)], "is a file, not a directory")
    assert afile.read_text() == "mine"


def test_eval_refuses_non_finite_weights_naming_the_tensor(tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    sae = _tiny_dictionary(tmp_path / "sae")
    weights = load_file(sae / "weights.safetensors")
    weights["b_enc"][3] = float("nan")
    save_file(weights, sae / "weights.safetensors")
    _one_line_error(capsys, ["eval", str(sae), "--set", "device=cpu"], "tensor 'b_enc' holds 1 NaN or infinite value")


def _tiny_dictionary(out):
    import torch

    from lm_saes.config import TrainConfig
    from lm_saes.training.train import train

    cfg = TrainConfig.model_validate(dict(dictionary={"kind": "topk", "d_sae": 16, "k": 2}, output_dir=out,
                                          total_tokens=256, batch_size=64, progress=False, device="cpu"))
    train(cfg, batches=[torch.randn(64, 8) for _ in range(4)])
    return out
