"""The toy directory: what `lm-saes toy` writes and every toy consumer reads.

    config.json                 {"artifact": "toy", "kind": <toy kind>, "toy": {...}, "train": {...}}
    weights.safetensors         the trained model's state dict
    train_log.jsonl             one line per evaluation: step, train/test loss and accuracy
    checkpoints/step-NNNNNNN.safetensors   weights at saved steps (step 0 first, the last step last)
    resume.pt                   model, optimizer and step of the last checkpoint (while unfinished)
    metrics.json                written last and atomically: final train/test loss and accuracy

It is a "toy" artifact (``lm_saes.artifacts``, ``artifact.json``): a finished toy of the same
config is reused, another config's is refused unless ``overwrite`` (then the new one is trained
beside it and swapped in when complete), and anything that is not a toy is never written over.
A directory without ``metrics.json`` is unfinished (training resumes from ``resume.pt``).
``load_toy`` turns a directory (or one of its checkpoints) back into the model and its config.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, NamedTuple

import torch
from pydantic import TypeAdapter, ValidationError
from safetensors.torch import load_file
from torch import nn

from lm_saes import __version__
from lm_saes.artifacts import PARTIAL, ArtifactDir, claim, config_identity, write_atomic, write_safetensors
from lm_saes.errors import LmSaesError
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


def write_config(cfg: ToyTrainConfig, directory: Path) -> None:
    record = {"artifact": ARTIFACT, "kind": cfg.toy.kind, "toy": cfg.toy.model_dump(mode="json"),
              "train": cfg.model_dump(mode="json"), "lm_saes_version": __version__}
    write_atomic(directory / CONFIG_NAME, (json.dumps(record, indent=2) + "\n").encode())


def read_record(directory: Path) -> dict[str, Any] | None:
    """config.json of a toy directory, or None if ``directory`` holds no toy."""
    try:
        record = json.loads((Path(directory) / CONFIG_NAME).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) and record.get("artifact") == ARTIFACT else None


def is_toy_dir(directory: Path) -> bool:
    return read_record(directory) is not None


def claim_toy(cfg: ToyTrainConfig) -> ArtifactDir:
    """``cfg.output_dir`` as a toy artifact (see ``lm_saes.artifacts``): ``reused`` when it holds a
    finished toy of this config; else write into ``work`` (resuming from its ``resume.pt``)."""
    return claim(cfg.output_dir, ARTIFACT, config_identity(cfg, UNCOMPARED), replace=cfg.overwrite, reuse=True,
                 legacy=_legacy_identity, resumable=lambda work: (work / RESUME_NAME).is_file())


def _legacy_identity(directory: Path) -> dict | str | None:
    """A toy written before artifact.json: its training config when finished, else PARTIAL (its
    config.json is compared with the run's before resuming)."""
    record = read_record(directory)
    if record is None:
        return None
    return _compared(record["train"]) if (directory / METRICS_NAME).is_file() else PARTIAL


def resumes(cfg: ToyTrainConfig, work: Path) -> bool:
    """Whether ``work`` holds an interrupted run of this config to resume (else it starts over)."""
    record = read_record(work)
    same = record is not None and _compared(record.get("train", {})) == _compared(cfg.model_dump(mode="json"))
    return same and (work / RESUME_NAME).is_file()


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
    model = model.to(device).eval()
    if hasattr(model, "tie_weights"):  # a tied view must follow its source to the device
        model.tie_weights()
    return LoadedToy(model, config, spec, step)
