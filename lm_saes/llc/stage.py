"""`lm-saes llc`: the local learning coefficient of a trained model directory.

Writes into ``output_dir`` (default ``<model>/llc``):

- ``config.json``: {"artifact": "llc", "config": the resolved LLCConfig}, first;
- ``llc_traces.png``: every chain's minibatch loss per SGLD step (the last checkpoint's with
  ``checkpoints``); ``llc_checkpoints.png``: the LLC beside train and test loss over training steps;
- for a modular-addition toy, ``fourier_norms.png`` (and ``fourier_evolution.png``, the frequency
  norms over checkpoints as one heatmap);
- ``llc.json`` last: the estimate (mean, standard deviation and error, per-chain values, MALA
  acceptance, draws/s, the traces), or one per checkpoint, and the Fourier analysis.

The directory is an "llc" artifact (``lm_saes.artifacts``): a finished estimate of the same config
is reused, another config's is refused unless ``overwrite = true`` (then the new estimate is
written beside it and swapped in when complete), and a directory holding anything else is never
written over. Chains that diverge (a NaN or infinite loss) are reported as such: the record and
the traces are written, then ``LLCDiverged`` names the step size to lower.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any, NamedTuple

import torch
from tqdm.auto import tqdm

from lm_saes.artifacts import MARKER, PARTIAL, ArtifactDir, claim, config_identity, write_atomic
from lm_saes.errors import ConfigError, LmSaesError
from lm_saes.llc import plots
from lm_saes.llc.config import LLCConfig, SGLDConfig
from lm_saes.llc.estimator import LLCEstimate, default_nbeta, estimate_llc
from lm_saes.llc.sources import TOY, LossSource, directory_kind, functional_loss, open_source, toy_source
from lm_saes.models.backend import resolve_device
from lm_saes.toys import to_device
from lm_saes.toys.directory import LoadedToy, checkpoint_steps, load_toy

ARTIFACT = "llc"
CONFIG_NAME = "config.json"
RECORD_NAME = "llc.json"
UNCOMPARED = {"overwrite", "progress", "output_dir", "device"}  # fields that do not change the estimate


class LLCDiverged(LmSaesError):
    """SGLD chains reached a NaN or infinite loss: the estimate is meaningless."""


class LLCResult(NamedTuple):
    output_dir: Path
    record: dict[str, Any]  # what llc.json holds
    files: list[Path]  # every file written (llc.json last)
    reused: bool  # a finished estimate of the same config was found; nothing was sampled


def run_llc(cfg: LLCConfig) -> LLCResult:
    """Estimate (or reuse) the LLC of ``cfg.model``; see the module docstring."""
    out = cfg.resolved_output_dir
    with claim_llc(cfg, out) as output:  # a failed run leaves no directory behind (nor a half replacement)
        if output.reused:
            previous = json.loads((out / RECORD_NAME).read_text())
            check_diverged(previous, cfg.sgld, out)
            return LLCResult(out, previous, [out / RECORD_NAME], reused=True)
        record, files = _estimate_into(cfg, output.work)
        output.commit()
    check_diverged(record, cfg.sgld, out)
    return LLCResult(out, record, [out / f.name for f in files], reused=False)


def claim_llc(cfg: LLCConfig, out: Path) -> ArtifactDir:
    """``out`` as an "llc" artifact: ``reused`` when it holds a finished estimate of this config."""
    return claim(out, ARTIFACT, config_identity(cfg, UNCOMPARED), replace=cfg.overwrite, reuse=True,
                 legacy=_legacy_identity)


def _legacy_identity(directory: Path) -> dict | str | None:
    """An estimate written before artifact.json: its config when finished, PARTIAL when not."""
    stored = _read_json(directory / CONFIG_NAME) or {}
    if stored.get("artifact") != ARTIFACT:
        return None
    return _compared(stored.get("config", {})) if (directory / RECORD_NAME).is_file() else PARTIAL


def _estimate_into(cfg: LLCConfig, work: Path) -> tuple[dict[str, Any], list[Path]]:
    """Estimate into ``work`` (started over: an interrupted estimate has nothing to resume); the
    record and every file written (llc.json last)."""
    for stale in work.iterdir():
        if stale.name != MARKER:
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    write_atomic(work / CONFIG_NAME, (json.dumps({"artifact": ARTIFACT, "config": cfg.model_dump(mode="json")},
                                                 indent=2) + "\n").encode())
    device = resolve_device(cfg.device)
    record, files = (estimate_checkpoints if cfg.checkpoints else estimate_model)(cfg, work, device)
    record = {"artifact": ARTIFACT, "model": str(cfg.model), "config": cfg.model_dump(mode="json"), **record}
    write_atomic(work / RECORD_NAME, (json.dumps(_finite(record), indent=1) + "\n").encode())
    return record, [*files, work / RECORD_NAME]


def sample(source: LossSource, sgld: SGLDConfig, progress: bool, desc: str = "llc") -> LLCEstimate:
    """The SGLD estimate around the source's trained weights."""
    loss_fn, params = functional_loss(source.model, source.loss)
    try:
        nbeta = default_nbeta(sgld.nbeta, sgld.batch_size, source.examples)
    except ValueError as e:
        raise ConfigError(f"sgld.nbeta: {e}") from e
    return estimate_llc(loss_fn, params, source.batches(sgld.batch_size, sgld.seed), sgld, nbeta, progress, desc)


def estimate_model(cfg: LLCConfig, out: Path, device: torch.device) -> tuple[dict[str, Any], list[Path]]:
    """One estimate at the model's final weights."""
    source = open_source(cfg, device)
    estimate = sample(source, cfg.sgld, cfg.progress)
    record = {"kind": source.kind, "examples": source.examples, "llc": summary(estimate),
              "loss_trace": estimate.loss_trace.tolist(), "init_loss_trace": estimate.init_loss_trace.tolist()}
    files = [trace_plot(estimate, f"{cfg.model.name}: LLC {_show(estimate)}", out)]
    toy = load_toy(cfg.model, device=device) if source.kind == TOY else None
    if toy is not None and toy.config.kind == "modular_addition":
        record["fourier"], figure = fourier_of(toy, cfg.model.name, device, out)
        files.append(figure)
    return record, files


def estimate_checkpoints(cfg: LLCConfig, out: Path, device: torch.device) -> tuple[dict[str, Any], list[Path]]:
    """One estimate per saved checkpoint of a toy's training, beside its train and test loss."""
    kind = directory_kind(cfg.model)
    if kind != TOY:
        raise ConfigError(f"--checkpoints follows a toy's saved checkpoints; {cfg.model} is a {kind} directory")
    steps = checkpoint_steps(cfg.model)
    if not steps:
        raise ConfigError(f"{cfg.model} has no saved checkpoints (train the toy with checkpoint_every > 0)")
    rows, estimate, toy = [], None, None
    for step in tqdm(steps, desc="checkpoints", unit="ckpt", disable=not cfg.progress, dynamic_ncols=True):
        toy = load_toy(cfg.model, step, device)
        estimate = sample(toy_source(toy, device), cfg.sgld, cfg.progress, desc=f"llc step {step}")
        data = toy.spec.data(toy.config)
        row = {"step": step, "llc": summary(estimate)}
        for split in ("train", "test"):
            scores = toy.spec.metrics(toy.model, to_device(getattr(data, split), device))
            row.update({f"{split}_{k}": v for k, v in scores.items()})
        if toy.config.kind == "modular_addition":
            from lm_saes.llc.fourier import frequency_norms

            row["frequency_norms"] = frequency_norms(toy.model.embed.weight.detach().cpu()).tolist()
        rows.append(row)
    files = [trace_plot(estimate, f"{cfg.model.name} at step {steps[-1]}: LLC {_show(estimate)}", out),
             plots.plot_checkpoints(rows, f"{cfg.model.name}: LLC over training", out / "llc_checkpoints.png")]
    record: dict[str, Any] = {"kind": TOY, "checkpoints": rows}
    if "frequency_norms" in rows[0]:
        import numpy as np

        norms = np.array([r["frequency_norms"] for r in rows])
        files.append(plots.plot_frequency_heatmap(steps, norms, f"{cfg.model.name}: embedding Fourier norms",
                                                  out / "fourier_evolution.png"))
        record["fourier"], figure = fourier_of(toy, f"{cfg.model.name} at step {steps[-1]}", device, out)
        files.append(figure)
    return record, files


def fourier_of(toy: LoadedToy, name: str, device: torch.device, out: Path) -> tuple[dict[str, Any], Path]:
    """The Fourier analysis of a modular-addition toy, and its frequency-norm figure."""
    from lm_saes.llc.fourier import fourier_report

    data = toy.spec.data(toy.config)
    report = fourier_report(toy.model, to_device(data.train, device), to_device(data.test, device))
    figure = plots.plot_frequency_norms(report.norms.numpy(), report.keys, f"{name}: key frequencies {report.keys}",
                                        out / "fourier_norms.png")
    return report.to_json(), figure


def summary(estimate: LLCEstimate) -> dict[str, Any]:
    return {
        "mean": estimate.llc_mean, "std": estimate.llc_std, "stderr": estimate.llc_stderr,
        "per_chain": estimate.llc_per_chain.tolist(), "init_loss": estimate.init_loss, "nbeta": estimate.nbeta,
        "mala_acceptance": estimate.mean_acceptance, "draws_per_second": estimate.draws_per_second,
        "seconds": estimate.seconds, "burn_in_steps": estimate.burn_in_steps,
        "diverged_chains": list(estimate.diverged_chains),
    }


def trace_plot(estimate: LLCEstimate, title: str, out: Path) -> Path:
    return plots.plot_traces(estimate.loss_trace.numpy(), estimate.init_loss_trace.numpy(),
                             estimate.burn_in_steps, title, out / "llc_traces.png")


def check_diverged(record: dict[str, Any], sgld: SGLDConfig, out: Path) -> None:
    """Raise LLCDiverged, naming the chains and the knob, if any chain's loss became non-finite."""
    rows = record.get("checkpoints", [{"llc": record.get("llc")}])
    estimates = [(f"step {r['step']} " if "step" in r else "", r["llc"]) for r in rows]
    where = [f"{at}chains {e['diverged_chains']}" for at, e in estimates if e["diverged_chains"]]
    if where:
        raise LLCDiverged(
            f"SGLD diverged ({'; '.join(where)} reached a NaN or infinite loss), so there is no estimate: lower "
            f"sgld.step_size (now {sgld.step_size}) or raise sgld.localization (now {sgld.localization}). "
            f"The traces are in {out / 'llc_traces.png'} and {out / RECORD_NAME}."
        )


def describe(result: LLCResult) -> str:
    """What the command prints: the estimate(s), the Fourier verdict, the files."""
    record, lines = result.record, []
    for row in record.get("checkpoints", [{"step": None, "llc": record.get("llc")}]):
        e = row["llc"]
        at = f"step {row['step']:>7}: " if row["step"] is not None else f"{record['model']}: "
        lines.append(f"{at}LLC {e['mean']:.4g} ± {e['stderr']:.2g} (std {e['std']:.3g} over {len(e['per_chain'])} "
                     f"chains; nbeta {e['nbeta']:.4g}, MALA acceptance {_number(e['mala_acceptance']):.2f}, "
                     f"{e['draws_per_second']:,.0f} draws/s)")
    if "fourier" in record:
        f = record["fourier"]
        lines.append(f"Fourier: key frequencies {f['key_frequencies']}; with only those, test accuracy "
                     f"{f['ablated_to_key_frequencies']['test']['accuracy']:.3f}; algorithm: {f['algorithm']}")
    files = ", ".join(p.name for p in result.files)
    lines.append(f"{'reused' if result.reused else 'wrote'} {result.output_dir}: {files}")
    return "\n".join(lines)


def _number(value: Any) -> float:
    return float("nan") if value is None else float(value)


def _show(estimate: LLCEstimate) -> str:
    return f"{estimate.llc_mean:.4g} ± {estimate.llc_stderr:.2g} ({len(estimate.llc_per_chain)} chains)"


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: those become null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _compared(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in UNCOMPARED}


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None
