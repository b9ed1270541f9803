"""The SAELens side of tests/dictionaries/test_saelens.py; runs under .venv-peers/bin/python.

    python saelens_peer.py JOBS.json

JOBS.json holds ``inputs`` (a safetensors file of input batches), ``outputs`` (where to write
results), ``load`` (directories lm-saes exported: each is loaded with ``SAE.load_from_disk`` and
run on its input) and ``create`` (SAELens dictionaries to build with random weights and save,
by recipe name, for lm-saes to load). For every job ``name`` the outputs hold ``name.acts``
(``encode``), ``name.recon`` (``decode`` of those) and ``name.forward``; ``report.json`` beside
them records each loaded class and architecture.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from sae_lens import SAE, TrainingSAE
from sae_lens.training.activation_scaler import ActivationScaler

D_IN, D_SAE, D_OUT = 6, 16, 4


def randomize(sae: torch.nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(sae.named_parameters()):
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)


def thresholds(seed: int) -> torch.Tensor:
    """Per-feature thresholds that are mostly positive, with a zero and a negative one."""
    gen = torch.Generator().manual_seed(seed)
    theta = torch.rand(D_SAE, generator=gen) * 0.6
    theta[0], theta[1] = 0.0, -0.4
    return theta


def build(arch: str, training: bool = False, **cfg) -> SAE:
    cls = TrainingSAE if training else SAE
    d_out = {"d_out": D_OUT} if "transcoder" in arch else {}
    meta = {"model_name": "peer-model", "hook_name": "blocks.1.hook_resid_post"}
    return cls.from_dict({"architecture": arch, "d_in": D_IN, "d_sae": D_SAE, **d_out, **cfg, "metadata": meta})


def create(recipe: str, out: Path, seed: int) -> SAE:
    """Build and save one SAELens dictionary; return the SAE whose outputs are the reference."""
    if recipe in ("standard", "standard_uncentred"):
        sae = build("standard", apply_b_dec_to_input=recipe == "standard")
        randomize(sae, seed)
    elif recipe == "topk_rescaled":
        sae = build("topk", k=4, rescale_acts_by_decoder_norm=True)
        randomize(sae, seed)
    elif recipe == "topk_checkpoint":  # a training SAE (rescale_acts_by_decoder_norm defaults to on)
        train = build("topk", training=True, k=4)
        randomize(train, seed)
        train.save_model(out)
        return SAE.load_from_disk(out)
    elif recipe in ("jumprelu", "jumprelu_transcoder"):
        sae = build(recipe, apply_b_dec_to_input=False) if recipe.endswith("transcoder") else build(recipe)
        randomize(sae, seed)
        sae.threshold.data = thresholds(seed)
    elif recipe == "transcoder":
        sae = build("transcoder", apply_b_dec_to_input=False)
        randomize(sae, seed)
    elif recipe == "batchtopk":  # a training checkpoint in out/checkpoint, the inference save in out/inference
        train = build("batchtopk", training=True, k=3)
        randomize(train, seed)
        train.topk_threshold = torch.tensor(0.3, dtype=torch.double)
        train.save_model(out / "checkpoint")
        train.save_inference_model(out / "inference")
        return SAE.load_from_disk(out / "inference")
    elif recipe == "normalized":  # a checkpoint whose norm factor sits in activation_scaler.json
        sae = build("standard", normalize_activations="expected_average_only_in")
        randomize(sae, seed)
        sae.save_model(out)
        ActivationScaler(scaling_factor=2.5).save(str(out / "activation_scaler.json"))
        sae.fold_activation_norm_scaling_factor(2.5)
        return sae
    elif recipe == "pre_v6_topk":  # a flat config as SAELens < 6 wrote it, with the all-ones scaling_factor
        gen = torch.Generator().manual_seed(seed)
        weights = {"W_enc": torch.randn(D_IN, D_SAE, generator=gen), "b_enc": torch.randn(D_SAE, generator=gen),
                   "W_dec": torch.randn(D_SAE, D_IN, generator=gen), "b_dec": torch.randn(D_IN, generator=gen),
                   "scaling_factor": torch.ones(D_SAE)}
        out.mkdir(parents=True)
        save_file(weights, out / "sae_weights.safetensors")
        cfg = {"d_in": D_IN, "d_sae": D_SAE, "dtype": "float32", "device": "cpu", "model_name": "peer-model",
               "hook_point": "blocks.1.hook_resid_post", "activation_fn_str": "topk",
               "activation_fn_kwargs": {"k": 4}, "apply_b_dec_to_input": True, "normalize_activations": False}
        (out / "cfg.json").write_text(json.dumps(cfg))
        return SAE.load_from_disk(out)
    else:
        raise ValueError(f"unknown recipe {recipe!r}")
    sae.save_model(out)
    return sae


@torch.no_grad()
def run(sae: SAE, x: torch.Tensor, name: str, results: dict[str, torch.Tensor]) -> None:
    sae.eval()
    acts = sae.encode(x)
    results[f"{name}.acts"] = acts
    results[f"{name}.recon"] = sae.decode(acts)
    results[f"{name}.forward"] = sae(x)


def main(jobs_path: str) -> None:
    jobs = json.loads(Path(jobs_path).read_text())
    inputs = load_file(jobs["inputs"])
    results: dict[str, torch.Tensor] = {}
    report: dict[str, dict[str, str]] = {}
    for i, job in enumerate(jobs.get("create", [])):
        sae = create(job["recipe"], Path(job["dir"]), seed=i)
        run(sae, inputs[job["input"]], job["name"], results)
    for job in jobs.get("load", []):
        sae = SAE.load_from_disk(job["dir"])
        report[job["name"]] = {"class": type(sae).__name__, "architecture": sae.cfg.architecture()}
        run(sae, inputs[job["input"]], job["name"], results)
    save_file({k: v.contiguous() for k, v in results.items()}, jobs["outputs"])
    Path(jobs["outputs"]).with_name("report.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1])
