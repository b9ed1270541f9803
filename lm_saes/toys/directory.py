"""The toy directory: what `lm-saes toy` writes and every toy consumer reads.

    config.json                 {"artifact": "toy", "kind": <toy kind>, "toy": {...}, "train": {...}}
    weights.safetensors         the trained model's state dict
    train_log.jsonl             one line per evaluation: step, train/test loss and accuracy
    checkpoints/step-NNNNNNN.safetensors   weights at saved steps (step 0 first, the last step last)
    resume.pt                   model, optimizer and step of the last checkpoint (while unfinished)
    metrics.json                written last and atomically: final train/test loss and accuracy

A directory without ``metrics.json`` is unfinished (training resumes from ``resume.pt``).
``load_toy`` turns a directory (or one of its checkpoints) back into the model and its config.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any, Literal, NamedTuple

import torch
from pydantic import TypeAdapter, ValidationError
from safetensors.torch import load_file
from torch import nn

from lm_saes import __version__
from lm_saes.artifacts import write_atomic, write_safetensors
from lm_saes.errors import ConfigError, LmSaesError
from lm_saes.toys import TOYS, ToySpec
from lm_saes.toys.config import ToyConfig, ToyTrainConfig

ARTIFACT = "toy"
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "weights.safetensors"
LOG_NAME = "train_log.jsonl"
METRICS_NAME = "metrics.json"
CHECKPOINT_DIR = "checkpoints"
RESUME_NAME = "resume.pt"
UNCOMPARED = {"overwrite", "progress", "output_dir"}  # config fields that do not change the result
_CHECKPOINT = re.compile(r"step-(\d+)\.safetensors")


class LoadedToy(NamedTuple):
    model: nn.Module  # in eval mode
    config: Any  # the toy's config (a ToyConfig member)
    spec: ToySpec  # its data, loss and metrics
    step: int | None  # the checkpoint's step, None for the final weights


def checkpoint_path(directory: Path, step: int) -> Path:
    return Path(directory) / CHECKPOINT_DIR / f"step-{step:07d}.safetensors"


def checkpoint_steps(directory: Path) -> list[int]:
    """Steps of the saved checkpoints, in order."""
    folder = Path(directory) / CHECKPOINT_DIR
    matches = (_CHECKPOINT.fullmatch(p.name) for p in folder.glob("step-*.safetensors")) if folder.is_dir() else ()
    return sorted(int(m.group(1)) for m in matches if m)


def save_weights(model: nn.Module, path: Path) -> None:
    """The state dict as safetensors, atomically (a crash leaves the old file or the new one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_safetensors(path, {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()})


def write_config(cfg: ToyTrainConfig) -> None:
    record = {"artifact": ARTIFACT, "kind": cfg.toy.kind, "toy": cfg.toy.model_dump(mode="json"),
              "train": cfg.model_dump(mode="json"), "lm_saes_version": __version__}
    write_atomic(cfg.output_dir / CONFIG_NAME, (json.dumps(record, indent=2) + "\n").encode())


def read_record(directory: Path) -> dict[str, Any] | None:
    """config.json of a toy directory, or None if ``directory`` holds no toy."""
    try:
        record = json.loads((Path(directory) / CONFIG_NAME).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) and record.get("artifact") == ARTIFACT else None


def is_toy_dir(directory: Path) -> bool:
    return read_record(directory) is not None


def prepare_output_dir(cfg: ToyTrainConfig) -> Literal["fresh", "resume", "finished"]:
    """What to do with ``cfg.output_dir``: train from scratch, resume, or reuse a finished run.

    A finished toy trained with another config is refused unless ``overwrite = true`` (then it is
    emptied first); a directory holding anything but a toy is always refused."""
    out = cfg.output_dir
    record = read_record(out)
    if record is None:
        if out.is_dir() and any(out.iterdir()):
            raise ConfigError(f"{out} exists and is not a toy directory; pick another output_dir")
        return "fresh"
    same = _compared(record.get("train", {})) == _compared(cfg.model_dump(mode="json"))
    finished = (out / METRICS_NAME).is_file()
    if finished and not same and not cfg.overwrite:
        raise ConfigError(f"{out} holds a toy trained with another config ({out / CONFIG_NAME}); set "
                          "overwrite=true to retrain it or pick another output_dir")
    if finished and same and not cfg.overwrite:
        return "finished"
    if same and not finished and (out / RESUME_NAME).is_file():
        return "resume"
    shutil.rmtree(out)  # overwrite, an unfinished run of another config, or one that never reached a checkpoint
    return "fresh"


def _compared(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in UNCOMPARED}


def load_toy(directory: str | Path, step: int | None = None, device: str | torch.device = "cpu") -> LoadedToy:
    """The model of a toy directory (its final weights, or the checkpoint at ``step``) and its config."""
    directory = Path(directory)
    record = read_record(directory)
    if record is None:
        raise LmSaesError(f"{directory} is not a toy directory: no {CONFIG_NAME} with artifact = 'toy' "
                          "(train one with `lm-saes toy CONFIG`)")
    kind = record.get("kind")
    if kind not in TOYS:
        raise LmSaesError(f"{directory / CONFIG_NAME} names toy kind {kind!r}; known kinds: {sorted(TOYS)}")
    try:
        config = TypeAdapter(ToyConfig).validate_python(record["toy"])
    except (KeyError, ValidationError) as e:
        raise LmSaesError(f"{directory / CONFIG_NAME} holds no valid toy config: {e}") from e
    path = directory / WEIGHTS_NAME if step is None else checkpoint_path(directory, step)
    if step is None and not (directory / METRICS_NAME).is_file():
        raise LmSaesError(f"{directory} is unfinished (no {METRICS_NAME}); run its `lm-saes toy` config again "
                          "to finish it")
    if not path.is_file():
        raise LmSaesError(f"{path} is missing; saved checkpoints: {checkpoint_steps(directory) or 'none'}")
    spec = TOYS[kind]
    model = spec.build(config)
    try:
        model.load_state_dict(load_file(path))
    except Exception as e:  # a corrupt file or another toy's weights
        raise LmSaesError(f"{path} does not hold weights of this {kind} toy: {e}") from e
    return LoadedToy(model.to(device).eval(), config, spec, step)
