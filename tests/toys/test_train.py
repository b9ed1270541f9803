"""`lm-saes toy`: the toy directory it writes, resuming, reuse, refusals, and the weight-decay switch."""

import json

import pytest
import torch
from safetensors.torch import load_file

from lm_saes.errors import ConfigError
from lm_saes.toys import train as toy_train
from lm_saes.toys.config import ToyTrainConfig
from lm_saes.toys.directory import checkpoint_steps, load_toy
from lm_saes.toys.train import batch_rows, train_toy, weight_decay_at


def small(tmp_path, **changes) -> ToyTrainConfig:
    cfg = {"toy": {"kind": "modular_addition", "p": 11, "d_embed": 4, "d_hidden": 8}, "output_dir": tmp_path / "toy",
           "steps": 30, "batch_size": 16, "checkpoint_every": 10, "log_every": 5, "progress": False, **changes}
    return ToyTrainConfig.model_validate(cfg)


def test_a_run_writes_the_toy_directory(tmp_path):
    result = train_toy(small(tmp_path))
    out = result.output_dir
    record = json.loads((out / "config.json").read_text())
    assert record["artifact"] == "toy" and record["kind"] == "modular_addition" and record["toy"]["p"] == 11
    assert checkpoint_steps(out) == [0, 10, 20, 30] and not (out / "resume.pt").exists()
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [5, 10, 15, 20, 25, 30]
    assert set(log[0]) >= {"train_loss", "test_loss", "train_accuracy", "test_accuracy", "weight_decay"}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_accuracy"] == log[-1]["test_accuracy"] and metrics["steps"] == 30
    final, last = load_file(out / "weights.safetensors"), load_file(out / "checkpoints" / "step-0000030.safetensors")
    assert all(torch.equal(final[k], last[k]) for k in final)
    toy = load_toy(out)
    assert toy.config.p == 11 and not toy.model.training
    assert metrics["test_loss"] == pytest.approx(toy.spec.metrics(toy.model, toy.spec.data(toy.config).test)["loss"])
    at_zero = load_toy(out, step=0)
    assert not torch.equal(at_zero.model.embed.weight, toy.model.embed.weight) and at_zero.step == 0


def test_an_interrupted_run_resumes_to_the_same_weights(tmp_path, monkeypatch):
    reference = train_toy(small(tmp_path / "a")).output_dir
    cfg = small(tmp_path / "b")
    saves = []
    original = toy_train.save_checkpoint

    def crash_after_the_second_checkpoint(*args):
        original(*args)
        saves.append(args[-1])
        if len(saves) == 2:
            raise KeyboardInterrupt  # as if killed right after step 20's checkpoint

    monkeypatch.setattr(toy_train, "save_checkpoint", crash_after_the_second_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        train_toy(cfg)
    monkeypatch.setattr(toy_train, "save_checkpoint", original)
    assert not (cfg.output_dir / "metrics.json").exists() and (cfg.output_dir / "resume.pt").exists()
    result = train_toy(cfg)
    assert result.resumed_from_step == 20 and not result.reused
    for name in ("weights.safetensors", "checkpoints/step-0000030.safetensors"):
        a, b = load_file(reference / name), load_file(cfg.output_dir / name)
        assert all(torch.equal(a[k], b[k]) for k in a)
    log = lambda d: [json.loads(line)["step"] for line in (d / "train_log.jsonl").read_text().splitlines()]
    assert log(cfg.output_dir) == log(reference)  # no line written twice


def test_a_finished_run_is_reused_and_another_config_refused(tmp_path):
    first = train_toy(small(tmp_path))
    again = train_toy(small(tmp_path, progress=True))  # a field that does not change the result
    assert again.reused and again.metrics == first.metrics
    with pytest.raises(ConfigError, match="different config \\(fields \\['lr'\\] differ\\); set overwrite=true"):
        train_toy(small(tmp_path, lr=1e-2))
    assert not train_toy(small(tmp_path, lr=1e-2, overwrite=True)).reused


def test_a_directory_holding_something_else_is_never_replaced(tmp_path):
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "notes.txt").write_text("mine")
    for overwrite in (False, True):
        with pytest.raises(ConfigError, match="holds files that no lm-saes stage recorded"):
            train_toy(small(tmp_path, overwrite=overwrite))
    assert (tmp_path / "toy" / "notes.txt").read_text() == "mine"


def test_weight_decay_stops_for_the_last_steps(tmp_path):
    cfg = small(tmp_path, weight_decay=0.5, no_weight_decay_steps=10)
    assert [weight_decay_at(s, cfg) for s in (0, 19, 20, 29)] == [0.5, 0.5, 0.0, 0.0]
    out = train_toy(cfg).output_dir
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["weight_decay"] for r in log] == [0.5, 0.5, 0.5, 0.5, 0.0, 0.0]
    with pytest.raises(ValueError, match="no_weight_decay_steps=40 exceeds steps=30"):
        small(tmp_path, no_weight_decay_steps=40)


def test_batches_are_a_pure_function_of_seed_and_step():
    assert torch.equal(batch_rows(7, 100, 16, 0), batch_rows(7, 100, 16, 0))
    assert not torch.equal(batch_rows(7, 100, 16, 0), batch_rows(8, 100, 16, 0))
    assert batch_rows(0, 100, 500, 1).max() < 100  # drawn with replacement


def test_the_command_trains_then_reuses(tmp_path, capsys):
    from lm_saes.cli import main

    args = ["toy", "--set", "toy.kind=modular_addition", "--set", "toy.p=7", "--set", "steps=4",
            "--set", "batch_size=8", "--set", f"output_dir={tmp_path / 'toy'}", "--set", "progress=false"]
    assert main(args) == 0 and main(args) == 0
    first, second = capsys.readouterr().out.splitlines()
    assert first.startswith(f"trained {tmp_path / 'toy'}: train_loss ") and "test_accuracy" in first
    assert second.startswith("reused ")
    assert main([*args, "--set", "toy.p=8"]) == 2  # another config: refused, not overwritten
    assert "set overwrite=true" in capsys.readouterr().err
