"""The artifact rule on real directories: kinds, identities, replacement beside the old artifact,
the atomic swap (and its two-rename twin), recovery of a killed swap, and clean failures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lm_saes import artifacts
from lm_saes.artifacts import MARKER, PARTIAL, claim, read_marker, staging_dir
from lm_saes.errors import ConfigError

A, B = {"lr": 1e-3, "k": 8}, {"lr": 2e-3, "k": 8}


def finished(target: Path, identity: dict, text: str, kind: str = "thing") -> None:
    """A complete artifact holding ``data.txt`` = text."""
    with claim(target, kind, identity) as out:
        (out.work / "data.txt").write_text(text)
        out.commit()


def test_a_fresh_artifact_is_written_in_place_and_marked_complete_last(tmp_path):
    target = tmp_path / "out"
    out = claim(target, "thing", A)
    assert out.work == target and not out.reused and not out.replacing
    assert read_marker(target)["status"] == PARTIAL
    out.commit()
    marker = read_marker(target)
    assert (marker["kind"], marker["status"], marker["config"]) == ("thing", "complete", A)


def test_another_kind_a_foreign_directory_and_a_file_are_refused_even_when_replacing(tmp_path):
    finished(tmp_path / "dict", A, "weights", kind="dictionary")
    with pytest.raises(ConfigError, match="holds a dictionary, not an activation cache"):
        claim(tmp_path / "dict", "activation_cache", A, replace=True)
    assert (tmp_path / "dict" / "data.txt").read_text() == "weights"
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match="no lm-saes stage recorded"):
        claim(tmp_path / "model", "thing", A, replace=True)
    assert (tmp_path / "model" / "config.json").read_text() == "{}"
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file, not a directory"):
        claim(tmp_path / "file", "thing", A)


def test_a_finished_artifact_is_reused_or_refused_naming_the_fields(tmp_path):
    target = tmp_path / "out"
    finished(target, A, "old")
    assert claim(target, "thing", A, reuse=True).reused
    with pytest.raises(ConfigError, match="made with this very config; set overwrite=true"):
        claim(target, "thing", A)
    with pytest.raises(ConfigError, match=r"a different config \(fields \['lr'\] differ\)"):
        claim(target, "thing", B, reuse=True)


@pytest.mark.parametrize("atomic", [True, False])
def test_a_replacement_is_written_beside_and_swapped_in_when_complete(tmp_path, monkeypatch, atomic):
    if not atomic:  # the two-rename twin of renameat2's exchange gives the same result
        monkeypatch.setattr(artifacts, "_renameat2", lambda: None)
    target = tmp_path / "out"
    finished(target, A, "old")
    out = claim(target, "thing", B, replace=True)
    assert out.replacing and out.work == staging_dir(target)
    (out.work / "data.txt").write_text("new")
    assert (target / "data.txt").read_text() == "old"  # untouched until the new one is complete
    out.commit()
    assert (target / "data.txt").read_text() == "new" and read_marker(target)["config"] == B
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_killed_replacement_leaves_the_old_artifact_and_is_resumed(tmp_path):
    target = tmp_path / "out"
    finished(target, A, "old")
    first = claim(target, "thing", B, replace=True)
    (first.work / "progress.txt").write_text("step 40")  # ...and the process dies here
    again = claim(target, "thing", B, replace=True)
    assert (target / "data.txt").read_text() == "old" and read_marker(target)["config"] == A
    assert again.work == first.work and not again.created
    assert (again.work / "progress.txt").read_text() == "step 40"
    other = claim(target, "thing", {"lr": 5.0}, replace=True)  # a replacement of another config starts over
    assert not (other.work / "progress.txt").exists()


def test_a_swap_killed_between_its_two_renames_is_finished(tmp_path):
    target = tmp_path / "out"
    finished(target, A, "old")
    out = claim(target, "thing", B, replace=True)
    (out.work / "data.txt").write_text("new")
    artifacts._write_marker(out.work, "thing", B, "complete")
    target.rename(artifacts._old_dir(target))  # the first rename of the fallback, then a kill
    claim(target, "thing", B, reuse=True)
    assert (target / "data.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_an_unfinished_artifact_resumes_or_is_discarded_only_when_asked(tmp_path):
    target = tmp_path / "out"
    claim(target, "thing", A)
    (target / "progress.txt").write_text("step 3")
    assert claim(target, "thing", A).work == target and (target / "progress.txt").exists()
    with pytest.raises(ConfigError, match=r"unfinished thing from a different config \(fields \['lr'\]"):
        claim(target, "thing", B)
    claim(target, "thing", B, replace=True)
    assert sorted(p.name for p in target.iterdir()) == [MARKER]


def test_a_failure_removes_what_the_run_created_unless_it_can_resume(tmp_path):
    with pytest.raises(RuntimeError):
        with claim(tmp_path / "a" / "b", "thing", A):
            raise RuntimeError("diverged")
    assert not (tmp_path / "a" / "b").exists()
    with pytest.raises(RuntimeError):
        with claim(tmp_path / "c", "thing", A, resumable=lambda d: (d / "ckpt").exists()) as out:
            (out.work / "ckpt").write_text("state")
            raise RuntimeError("killed by the user")
    assert (tmp_path / "c" / "ckpt").exists()
    finished(tmp_path / "d", A, "old")
    with pytest.raises(RuntimeError):
        with claim(tmp_path / "d", "thing", B, replace=True):
            raise RuntimeError("diverged")
    assert (tmp_path / "d" / "data.txt").read_text() == "old" and not staging_dir(tmp_path / "d").exists()


def test_a_legacy_artifact_is_recognised_by_its_stage(tmp_path):
    target = tmp_path / "old-style"
    target.mkdir()
    (target / "saved.json").write_text(json.dumps(A))

    def legacy(d: Path):
        return json.loads((d / "saved.json").read_text())

    assert claim(target, "thing", A, reuse=True, legacy=legacy).reused
    with pytest.raises(ConfigError, match="a different config"):
        claim(target, "thing", B, legacy=legacy)
    assert claim(target, "thing", B, legacy=lambda d: PARTIAL).work == target  # resumed: the stage checks it
