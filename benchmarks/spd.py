"""SPD's cost: one training step as a multiple of the target model's own forward + backward on the
same batch, and the peak memory of each, for TMS 40-10, resid_mlp1 and the tiny LM.

Each target is measured in its own process (so its peak memory is its own), with the settings of
its example (examples/spd_tms_40-10.toml, spd_resid_mlp1.toml, spd_tiny_lm.toml) on a randomly
initialised model of the example's shape (timing does not depend on the weights):

- target: the model's forward, its training loss (MSE on the labels, next-token CE for the LM)
  and backward, parameters trainable, no optimizer step;
- spd: ``SPDTrainer.train_step``: the target's forward recording inputs, causal importances, the
  stochastic and layerwise (one forward per matrix) reconstructions, importance minimality,
  backward and the AdamW step.

Rounds alternate the two so the machine's load hits both alike; a round times ``--steps`` steps by
wall clock (and, on the CPU, process CPU time). Peak memory: CUDA's max allocated bytes over each
phase, or on the CPU the growth of the process's peak RSS over each phase (target first). Prints
one JSON line per target, then a summary whose ``ratio`` is the largest multiple.

    python benchmarks/spd.py                     # CPU, about 2 minutes on 2 cores
    python benchmarks/spd.py --device cuda       # the example shapes on a GPU
    python benchmarks/spd.py --smoke             # tiny shapes (what gpu_check --smoke runs)
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
TARGETS = ("tms_40-10", "resid_mlp1", "tiny_lm")


def build(name: str, smoke: bool, device: torch.device):
    """(target model, a batch of its input, its training loss, the SPD config) at the example's shape."""
    from lm_saes.spd.config import load_train_config
    from lm_saes.toys.config import ResidMLPConfig, TMSConfig
    from lm_saes.toys.resid_mlp import ResidMLP
    from lm_saes.toys.resid_mlp import sample as resid_sample
    from lm_saes.toys.tms import TMSModel
    from lm_saes.toys.tms import sample as tms_sample

    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    example = {"tms_40-10": "spd_tms_40-10.toml", "resid_mlp1": "spd_resid_mlp1.toml", "tiny_lm": "spd_tiny_lm.toml"}
    small = ["spd.C=16", f"batch_size={2 if name == 'tiny_lm' else 64}"] if smoke else []
    cfg = load_train_config(REPO / "examples" / example[name], ["device=" + device.type, *small])
    if name == "tms_40-10":
        toy = TMSConfig(n_features=40, n_hidden=10)
        model, data = TMSModel(toy), tms_sample(toy, cfg.batch_size, generator)
        return model.to(device), data.features.to(device), lambda out: F.mse_loss(out, data.labels.to(device)), cfg
    if name == "resid_mlp1":
        toy = ResidMLPConfig(d_embed=100, d_mlp=10, n_features=20) if smoke else ResidMLPConfig()
        model, data = ResidMLP(toy), resid_sample(toy, cfg.batch_size, generator)
        return model.to(device), data.features.to(device), lambda out: F.mse_loss(out, data.labels.to(device)), cfg
    from transformers import GPT2Config, GPT2LMHeadModel

    shape = dict(n_embd=32, n_layer=2, n_head=2, vocab_size=512) if smoke else dict(n_embd=128, n_layer=4, n_head=4,
                                                                                    vocab_size=4096)
    model = GPT2LMHeadModel(GPT2Config(n_positions=128, **shape)).eval()
    ctx = cfg.target.data.context_size
    tokens = torch.randint(0, shape["vocab_size"], (cfg.batch_size, ctx), generator=generator).to(device)
    ce = lambda out: F.cross_entropy(out[:, :-1].flatten(0, 1), tokens[:, 1:].flatten())
    return model.to(device), tokens, ce, cfg


def peak(device: torch.device) -> float:
    """MB: CUDA's peak allocation since the last reset, or the process's peak RSS."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def measure(name: str, smoke: bool, device: torch.device, steps: int, rounds: int) -> dict:
    from lm_saes.spd.model import ComponentModel
    from lm_saes.spd.trainer import SPDTrainer

    target, x, loss, cfg = build(name, smoke, device)
    trained = build(name, smoke, device)[0].train()  # the same model for its own training step (trainable)
    spd_model = ComponentModel(target, cfg.spd, x[:2]).to(device)
    trainer = SPDTrainer(cfg, spd_model, "kl" if name == "tiny_lm" else "mse", device)

    def target_step() -> None:
        trained.zero_grad(set_to_none=True)
        out = trained(x)
        loss(out.logits if hasattr(out, "logits") else out).backward()

    def spd_step() -> None:
        trainer.train_step(x)

    def timed(step) -> tuple[float, float]:
        if device.type == "cuda":
            torch.cuda.synchronize()
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(steps):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - wall) / steps, (time.process_time() - cpu) / steps

    base = peak(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    target_step()  # warm up, and the peak of each phase (the target first: RSS only grows)
    memory_target = peak(device) - (0 if device.type == "cuda" else base)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    spd_step()
    memory_spd = peak(device) - (0 if device.type == "cuda" else base)
    times = {"target": [], "spd": []}
    for _ in range(rounds):
        times["target"].append(timed(target_step))
        times["spd"].append(timed(spd_step))
    wall = {k: statistics.median(t[0] for t in v) for k, v in times.items()}
    cpu = {k: statistics.median(t[1] for t in v) for k, v in times.items()}
    return {
        "target": name, "device": str(device), "batch": list(x.shape), "matrices": len(spd_model.plan),
        "subcomponents": sum(d.C for d in spd_model.plan.values()),
        "target_step_ms": round(wall["target"] * 1e3, 3), "spd_step_ms": round(wall["spd"] * 1e3, 3),
        "multiple": round(wall["spd"] / wall["target"], 2),
        "multiple_cpu_time": round(cpu["spd"] / cpu["target"], 2) if device.type == "cpu" else None,
        "target_peak_mb": round(memory_target, 1), "spd_peak_mb": round(memory_spd, 1),
        "memory": "cuda max allocated" if device.type == "cuda" else "growth of peak RSS",
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--smoke", action="store_true", help="tiny shapes, few steps")
    p.add_argument("--steps", type=int, help="steps per round (default 10, 2 with --smoke)")
    p.add_argument("--rounds", type=int, help="alternating rounds per system (default 3, 1 with --smoke)")
    p.add_argument("--one", choices=TARGETS, help=argparse.SUPPRESS)  # the child process measuring one target
    args = p.parse_args()
    steps = args.steps or (2 if args.smoke else 10)
    rounds = args.rounds or (1 if args.smoke else 3)
    if args.one:
        print(json.dumps(measure(args.one, args.smoke, torch.device(args.device), steps, rounds)), flush=True)
        return
    rows = []
    for name in TARGETS:
        cmd = [sys.executable, __file__, "--one", name, "--device", args.device, "--steps", str(steps),
               "--rounds", str(rounds), *(["--smoke"] if args.smoke else [])]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"{name} failed:\n{done.stderr[-3000:]}")
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    summary = {"summary": "SPD step / target forward+backward", "ratio": max(r["multiple"] for r in rows),
               **{f"{r['target']}_multiple": r["multiple"] for r in rows},
               **{f"{r['target']}_spd_peak_mb": r["spd_peak_mb"] for r in rows}}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
