"""The command layer: exit codes, user errors without tracebacks, the hooks listing."""

import subprocess
import sys

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
