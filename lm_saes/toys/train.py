"""`lm-saes toy`: train any registered toy into a toy directory (``lm_saes/toys/directory.py``).

Method. AdamW at a constant learning rate on batches drawn with replacement from the train set,
or drawn fresh from the toy's distribution for toys that have one (``ToySpec.sample``); the
batch of step s comes from a generator seeded by (seed, s), so a resumed run draws exactly the
batches of an uninterrupted one. Parameters a toy keeps fixed (``requires_grad = False``, e.g.
TMS's identity layers) are not optimised. Weight decay is switched off for the last
``no_weight_decay_steps`` steps. Every ``log_every`` steps the whole train and test sets are
evaluated into ``train_log.jsonl``; every ``checkpoint_every`` steps the weights are saved in
``checkpoints/`` (and the optimizer in ``resume.pt``), so `lm-saes llc --checkpoints` can follow
the run and an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from lm_saes.artifacts import MARKER, write_atomic
from lm_saes.errors import LmSaesError
from lm_saes.models.backend import resolve_device
from lm_saes.toys import TOYS, ToySpec, n_examples, take, to_device
from lm_saes.toys.config import ToyTrainConfig
from lm_saes.toys.directory import (
    LOG_NAME, METRICS_NAME, RESUME_NAME, WEIGHTS_NAME, checkpoint_path, claim_toy, resumes, save_weights,
    write_config,
)


class ToyTrainResult(NamedTuple):
    output_dir: Path  # the toy directory (load it with lm_saes.toys.directory.load_toy)
    metrics: dict[str, float]  # final train/test loss and accuracy
    reused: bool  # a finished run of the same config was found; nothing was trained
    resumed_from_step: int  # 0 for a fresh run


def batch_rows(step: int, n: int, batch_size: int, seed: int) -> Tensor:
    """Rows of step ``step``: drawn with replacement, a pure function of (seed, step)."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + step)
    return torch.randint(n, (batch_size,), generator=generator)


def weight_decay_at(step: int, cfg: ToyTrainConfig) -> float:
    return cfg.weight_decay if step < cfg.steps - cfg.no_weight_decay_steps else 0.0


def batch_at(spec: ToySpec, cfg: ToyTrainConfig, train_set: Any, step: int, device: torch.device) -> Any:
    """The examples of step ``step``: fresh from the toy's distribution, or rows of the train set."""
    if spec.sample is not None:
        generator = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        return to_device(spec.sample(cfg.toy, cfg.batch_size, generator), device)
    return take(train_set, batch_rows(step, n_examples(train_set), cfg.batch_size, cfg.seed).to(device))


def train_toy(cfg: ToyTrainConfig) -> ToyTrainResult:
    """Train (resume, or reuse) the toy of ``cfg``; see the module docstring."""
    with claim_toy(cfg) as output:  # a run that fails before its first checkpoint leaves nothing behind
        if output.reused:
            return ToyTrainResult(cfg.output_dir, json.loads((cfg.output_dir / METRICS_NAME).read_text()), True, 0)
        metrics, first = _train_into(cfg, output.work)
        output.commit()
    return ToyTrainResult(cfg.output_dir, metrics, False, first)


def _train_into(cfg: ToyTrainConfig, out: Path) -> tuple[dict[str, float], int]:
    """Train into ``out`` (resuming what is there); the final metrics and the step it resumed at."""
    start = time.perf_counter()
    spec, device = TOYS[cfg.toy.kind], resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    model = spec.build(cfg.toy).to(device)
    data = spec.data(cfg.toy)
    train_set, test_set = to_device(data.train, device), to_device(data.test, device)
    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=cfg.lr, betas=cfg.adam_betas, weight_decay=cfg.weight_decay)
    first = 0
    if resumes(cfg, out):
        saved = torch.load(out / RESUME_NAME, map_location=device, weights_only=True)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        first = saved["step"]
        drop_log_after(out / LOG_NAME, first)  # lines the interrupted run wrote past its checkpoint
    else:
        for stale in out.iterdir():  # a run killed before its first checkpoint: start over
            if stale.name != MARKER:
                shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
        write_config(cfg, out)
        if cfg.checkpoint_every:
            save_weights(model, checkpoint_path(out, 0))

    def evaluate(step: int) -> dict[str, float]:
        model.eval()
        train_m, test_m = spec.metrics(model, train_set), spec.metrics(model, test_set)
        model.train()
        return {"step": step, **{f"train_{k}": v for k, v in train_m.items()},
                **{f"test_{k}": v for k, v in test_m.items()}, "weight_decay": weight_decay_at(step - 1, cfg)}

    model.train()
    bar = tqdm(range(first, cfg.steps), desc=f"toy {cfg.toy.kind}", unit="step", disable=not cfg.progress,
               dynamic_ncols=True)
    for step in bar:
        for group in optimizer.param_groups:
            group["weight_decay"] = weight_decay_at(step, cfg)
        loss = spec.loss(model, batch_at(spec, cfg, train_set, step, device))
        if not torch.isfinite(loss):
            raise LmSaesError(f"the toy's loss became {float(loss)} at step {step}; lower `lr` "
                              f"(now {cfg.lr}). The last checkpoint in {cfg.output_dir} is kept.")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.steps:
            record = evaluate(done)
            with open(out / LOG_NAME, "a") as f:
                f.write(json.dumps(record) + "\n")
            bar.set_postfix(train=f"{record['train_loss']:.3g}", test=f"{record['test_loss']:.3g}",
                            test_acc=f"{record.get('test_accuracy', float('nan')):.3f}")
        if cfg.checkpoint_every and (done % cfg.checkpoint_every == 0 or done == cfg.steps):
            save_checkpoint(model, optimizer, out, done)
    bar.close()
    metrics = {k: v for k, v in evaluate(cfg.steps).items() if k not in ("step", "weight_decay")}
    metrics.update(steps=cfg.steps, seconds=time.perf_counter() - start,
                   n_parameters=sum(p.numel() for p in trained))
    save_weights(model, out / WEIGHTS_NAME)
    write_atomic(out / METRICS_NAME, (json.dumps(metrics, indent=2) + "\n").encode())
    (out / RESUME_NAME).unlink(missing_ok=True)
    return metrics, first


def drop_log_after(path: Path, step: int) -> None:
    if path.is_file():
        kept = [line for line in path.read_text().splitlines(keepends=True) if json.loads(line)["step"] <= step]
        path.write_text("".join(kept))


def save_checkpoint(model: nn.Module, optimizer: torch.optim.Optimizer, out: Path, step: int) -> None:
    """The weights at ``step`` in checkpoints/, then what a resume needs (atomically)."""
    save_weights(model, checkpoint_path(out, step))
    tmp = out / f".{RESUME_NAME}.tmp"
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step}, tmp)
    tmp.replace(out / RESUME_NAME)
