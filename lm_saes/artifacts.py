"""Artifact directories: what a stage's output directory holds, and how it is replaced safely.

Every stage that writes a directory (generate's cache root, pretrain's model, train's dictionary,
a sweep, an export) records in it ``artifact.json``::

    {"kind": "dictionary", "status": "partial" | "complete", "identity": "3f2a...",
     "config": {...the fields that decide the content...}, "lm_saes_version": "...", "updated_at": "..."}

The rule, the same for every stage (``claim``):

1. A path that is a file, a directory holding another kind of artifact, or a non-empty directory
   that no stage recorded is refused, always: lm-saes never deletes what it did not write, nor
   what another stage wrote.
2. A complete artifact of the same kind is reused when its identity matches and the stage reuses
   (generate, pretrain); otherwise it is refused unless ``replace``.
3. Replacing a complete artifact: the stage writes into ``.<name>.replacing`` beside it, and
   ``commit`` swaps the two directories atomically once the new one is complete (renameat2's
   RENAME_EXCHANGE on Linux, two renames elsewhere), then deletes the old one. A run killed at any
   moment leaves the old artifact whole; running it again resumes the replacement.
4. A partial artifact (a killed run) is resumed in place when its identity matches; one of another
   identity is refused unless ``replace``, which discards it (nothing finished is lost).
5. A run that raises before leaving anything to resume removes the directory it created.

A stage adopts it in a few lines (a new stage folder does the same)::

    from lm_saes.artifacts import claim, config_identity

    identity = config_identity(cfg, exclude={"overwrite", "progress", "output_dir"})
    with claim(cfg.output_dir, "toy_model", identity, replace=cfg.overwrite, reuse=True) as out:
        if out.reused:
            return ...                # a complete artifact of this very config is already there
        ...write everything into out.work, resuming from what is there...
        out.commit()                  # marks it complete and moves it into place

``legacy`` recognises an artifact written before ``artifact.json`` existed: it returns that
artifact's identity config when it is complete, ``PARTIAL`` for an unfinished one (resumed in
place: the stage's own checks, e.g. of its checkpoint's config, decide), or None. Under torchrun rank 0 claims; the other ranks call ``claim``
with ``effects=False`` afterwards, which decides the same ``work`` without touching the disk.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from lm_saes import __version__
from lm_saes.errors import ConfigError

MARKER = "artifact.json"
PARTIAL, COMPLETE = "partial", "complete"
REPLACING = ".replacing"  # suffix of the sibling a replacement is written into


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves either the old file or the whole new one."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def write_safetensors(path: Path, tensors: dict[str, Any], metadata: dict[str, str] | None = None) -> None:
    """``tensors`` as a safetensors file, atomically and with the umask's mode (safetensors' own
    ``save_file`` creates files readable by their owner alone)."""
    from safetensors.torch import save

    write_atomic(path, save(tensors, metadata=metadata))


def config_identity(cfg: BaseModel, exclude: set[str]) -> dict[str, Any]:
    """The fields of ``cfg`` that decide an artifact's content, as JSON values."""
    return cfg.model_dump(mode="json", exclude=exclude)


def identity_hash(identity: dict[str, Any]) -> str:
    """A short, stable hash of an identity config (16 hex digits of its canonical JSON's sha256)."""
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def directory_identity(directory: str | Path) -> str:
    """The identity of the artifact a directory holds, for records that name it (the store): a
    hash of its resolved path, so re-training it in place keeps it, and another directory differs."""
    return hashlib.sha256(str(Path(directory).resolve()).encode()).hexdigest()[:16]


def differing_fields(a: dict, b: dict) -> list[str]:
    """The keys whose values differ between two configs (one side may lack them)."""
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


def read_marker(directory: Path) -> dict | None:
    """The directory's ``artifact.json``, or None when it has none (or an unreadable one)."""
    try:
        marker = json.loads((Path(directory) / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) and "kind" in marker else None


def staging_dir(target: Path) -> Path:
    """Where a replacement of ``target`` is written until it is swapped in."""
    target = Path(os.path.abspath(target))
    return target.parent / f".{target.name}{REPLACING}"


class ArtifactDir:
    """One claimed output directory: write into ``work``, then ``commit`` (see the module docstring)."""

    def __init__(self, target: Path, kind: str, identity: dict, work: Path, *, reused: bool, created: bool,
                 effects: bool, resumable: Callable[[Path], bool] | None) -> None:
        self.target, self.kind, self.identity, self.work = target, kind, identity, work
        self.reused = reused  # a complete artifact of this identity is at target: nothing to write
        self.replacing = work != target  # work is the staging sibling of a complete artifact
        self.created = created  # this run created work (so a failure before any progress removes it)
        self.effects = effects
        self.resumable = resumable
        self.committed = False

    def commit(self) -> None:
        """Mark ``work`` complete and, when replacing, swap it in for the old artifact."""
        if not self.effects:
            return
        _write_marker(self.work, self.kind, self.identity, COMPLETE)
        if self.replacing:
            _exchange(self.work, self.target)  # now target is the new artifact, work the old one
            shutil.rmtree(self.work, ignore_errors=True)
        self.committed = True

    def abandon(self) -> None:
        """After a failure: remove ``work`` if this run created it and left nothing to resume."""
        if not self.effects or self.committed or self.reused or not self.created:
            return
        if self.resumable is not None and self.work.is_dir() and self.resumable(self.work):
            return
        shutil.rmtree(self.work, ignore_errors=True)

    def __enter__(self) -> ArtifactDir:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abandon()


def claim(
    target: str | Path, kind: str, identity: dict[str, Any], *, replace: bool = False, reuse: bool = False,
    legacy: Callable[[Path], dict | str | None] | None = None, resumable: Callable[[Path], bool] | None = None,
    effects: bool = True, replace_hint: str = "set overwrite=true",
) -> ArtifactDir:
    """Claim ``target`` for an artifact of ``kind`` and ``identity``; see the module docstring.

    ``reuse``: a complete artifact of the same identity is handed back (``reused``) instead of
    refused. ``resumable(work)`` says whether a failed run left something worth resuming.
    ``replace_hint`` is how the user asks for a replacement (named in the refusals).
    """
    target = Path(target)
    _recover_interrupted_swap(target, effects)
    found = _inspect(target, kind, identity, legacy, replace_hint)
    same = found is not None and found["identity"] == identity_hash(identity)
    args = dict(effects=effects, resumable=resumable)
    if found is None:  # absent or empty: a fresh artifact, written in place
        created = not target.exists()
        if effects:
            target.mkdir(parents=True, exist_ok=True)
            _write_marker(target, kind, identity, PARTIAL)
        return ArtifactDir(target, kind, identity, target, reused=False, created=created, **args)
    differ = differing_fields(found.get("config", {}), identity)
    if found["status"] == COMPLETE:
        if same and reuse and not replace:
            return ArtifactDir(target, kind, identity, target, reused=True, created=False, **args)
        if not replace:
            what = "this very config" if same else f"a different config (fields {differ} differ)"
            raise ConfigError(f"{target} already holds a finished {_words(kind)} made with {what}; "
                              f"{replace_hint} to replace it (the old one stays until the new one is "
                              "complete), or choose another output directory")
        return _claim_staging(target, kind, identity, **args)
    if not same:  # a killed run of another config
        if not replace:
            raise ConfigError(f"{target} holds an unfinished {_words(kind)} from a different config (fields {differ} "
                              f"differ). Run that config again to resume it, {replace_hint} to discard "
                              "it, or choose another output directory")
        if effects:
            _empty(target)
            _write_marker(target, kind, identity, PARTIAL)
        return ArtifactDir(target, kind, identity, target, reused=False, created=True, **args)
    return ArtifactDir(target, kind, identity, target, reused=False, created=False, **args)  # resume in place


def _claim_staging(target: Path, kind: str, identity: dict, *, effects: bool,
                   resumable: Callable[[Path], bool] | None) -> ArtifactDir:
    """Write a replacement of the complete artifact at ``target`` beside it (resuming one of the
    same identity a killed run left there)."""
    work = staging_dir(target)
    marker = read_marker(work)
    resume = marker is not None and marker.get("status") == PARTIAL and marker.get("identity") == identity_hash(identity)
    if effects and not resume:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        _write_marker(work, kind, identity, PARTIAL)
    return ArtifactDir(target, kind, identity, work, reused=False, created=not resume, effects=effects,
                       resumable=resumable)


def _inspect(target: Path, kind: str, identity: dict, legacy: Callable[[Path], dict | str | None] | None,
             hint: str) -> dict | None:
    """The marker of the artifact at ``target`` (None: absent or empty); refuses what is not ``kind``."""
    if target.exists() and not target.is_dir():
        raise ConfigError(f"{target} is a file, not a directory; choose another output directory")
    if not target.exists() or not any(target.iterdir()):
        return None
    marker = read_marker(target)
    if marker is None and legacy is not None and (config := _safely(legacy, target)) is not None:
        if config == PARTIAL:
            marker = {"kind": kind, "status": PARTIAL, "identity": identity_hash(identity), "config": identity}
        else:
            marker = {"kind": kind, "status": COMPLETE, "identity": identity_hash(config), "config": config}
    if marker is None:
        raise ConfigError(f"{target} holds files that no lm-saes stage recorded (no {MARKER}); lm-saes will not "
                          "write over them: choose another output directory, or empty it yourself")
    if marker["kind"] != kind:
        raise ConfigError(f"{target} holds {_article(marker['kind'])}, not {_article(kind)}; lm-saes will not "
                          f"replace one kind of artifact by another (even when you {hint}): choose another "
                          "output directory, or delete it yourself")
    return marker


def _safely(legacy: Callable[[Path], dict | str | None], target: Path) -> dict | str | None:
    """``legacy(target)``, or None when the files it reads are unreadable (then nothing is recognised)."""
    try:
        return legacy(target)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _words(kind: str) -> str:
    return kind.replace("_", " ")


def _article(kind: str) -> str:
    words = _words(kind)
    return ("an " if words[0] in "aeiou" else "a ") + words


def _write_marker(directory: Path, kind: str, identity: dict, status: str) -> None:
    marker = {"kind": kind, "status": status, "identity": identity_hash(identity), "config": identity,
              "lm_saes_version": __version__, "updated_at": datetime.now(timezone.utc).isoformat()}
    write_atomic(directory / MARKER, (json.dumps(marker, indent=2, default=str) + "\n").encode())


def _empty(directory: Path) -> None:
    for child in directory.iterdir():
        shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def _exchange(a: Path, b: Path) -> None:
    """Swap two directories: atomically with renameat2(RENAME_EXCHANGE) where the OS has it, else
    with two renames through ``b``'s ``.old`` sibling (``_recover_interrupted_swap`` finishes a
    swap killed between them)."""
    renameat2 = _renameat2()
    if renameat2 is not None:
        done = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
        if done == 0:
            _fsync_dir(Path(os.path.abspath(b)).parent)
            return
    old = _old_dir(b)
    os.rename(b, old)
    os.rename(a, b)
    os.rename(old, a)
    _fsync_dir(Path(os.path.abspath(b)).parent)


def _renameat2():
    """libc's renameat2, or None where the C library lacks it."""
    return getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)


def _old_dir(target: Path) -> Path:
    target = Path(os.path.abspath(target))
    return target.parent / f".{target.name}.old"


def _recover_interrupted_swap(target: Path, effects: bool) -> None:
    """A two-rename swap killed between its renames left ``target`` missing: the complete
    replacement is in the staging directory and the old artifact in ``.old``; finish the swap."""
    old = _old_dir(target)
    if not effects or target.exists() or not old.is_dir():
        return
    staged = read_marker(staging_dir(target))
    if staged is not None and staged.get("status") == COMPLETE:
        os.rename(staging_dir(target), target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(old, target)
