"""Checkpoints: one function names the path for both save and load; writes are atomic.

Every rank of a distributed run keeps its own file (its feature shard, its optimizer state)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_DIR = "checkpoint"


def checkpoint_path(output_dir: Path, rank: int = 0) -> Path:
    return output_dir / CHECKPOINT_DIR / f"state-rank{rank}.pt"


def save_checkpoint(output_dir: Path, state: dict[str, Any], config: dict[str, Any], rank: int = 0) -> Path:
    path = checkpoint_path(output_dir, rank)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp-{os.getpid()}")
    torch.save({"state": state, "config": config}, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(
    output_dir: Path, map_location: torch.device, rank: int = 0
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(trainer state, config it was made with), or None if there is no checkpoint."""
    path = checkpoint_path(output_dir, rank)
    if not path.is_file():
        return None
    blob = torch.load(path, map_location=map_location, weights_only=True)
    return blob["state"], blob["config"]


def remove_checkpoint(output_dir: Path) -> None:
    shutil.rmtree(output_dir / CHECKPOINT_DIR, ignore_errors=True)
