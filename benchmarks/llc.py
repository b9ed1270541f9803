"""SGLD draws per second for the LLC: lm-saes against devinterp 2.0.1, same model and settings, one run.

The model is examples/toy_modular_addition.toml's grokked MLP (p = 53, trained first, or reused
from --toy). Both systems sample the same chains x draws with the same step size, localization,
nbeta and batch size, from the same weights and training pairs:

- lm_saes  : ``lm_saes.llc.stage.sample`` (chains stepped together, one vmapped forward and
             backward per step; the loss at w* on every batch), once with the MALA diagnostic off
             (like devinterp) and once at its default (every 10th step);
- devinterp: ``devinterp.slt.llc.llc`` (chains one after another; the call tests/llc/test_devinterp.py
             checks for equality).

Rounds alternate the systems so a change in the machine's load hits each alike; each prints one
JSON line per round (draws/s by wall clock and by process CPU time, the estimate), then a summary
line with the medians and ``speedup`` = lm_saes / devinterp. Target: >= 5x on CPU and on a GPU.

    .venv-peers/bin/python benchmarks/llc.py                   # CPU, ~2 minutes on 2 cores
    .venv-peers/bin/python benchmarks/llc.py --chains 16 --draws 500
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from lm_saes.config import load_config
from lm_saes.llc.config import SGLDConfig
from lm_saes.llc.estimator import default_nbeta
from lm_saes.llc.sources import toy_source
from lm_saes.llc.stage import sample
from lm_saes.toys.config import ToyTrainConfig
from lm_saes.toys.directory import load_toy
from lm_saes.toys.train import train_toy

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "llc"))
from devinterp_peer import devinterp_llc  # noqa: E402  (tests/llc/devinterp_peer.py: the one devinterp adapter)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--toy", type=Path, help="a trained modular-addition toy directory (default: train the example)")
    p.add_argument("--chains", type=int, default=8)
    p.add_argument("--draws", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--step-size", type=float, default=1e-4)
    p.add_argument("--localization", type=float, default=100.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--device", default="cpu", help="where both samplers run: cpu, cuda")
    p.add_argument("--smoke", action="store_true", help="tiny settings (benchmarks/gpu_check.py --smoke)")
    args = p.parse_args()
    if args.smoke:
        args.chains, args.draws, args.rounds = 2, 10, 1
    return args


def ours(toy: Path, cfg: SGLDConfig, device: torch.device) -> dict:
    source = toy_source(load_toy(toy, device=device), device)
    cpu = time.process_time()
    estimate = sample(source, cfg, progress=False)
    return {"llc_mean": estimate.llc_mean, "seconds": estimate.seconds, "cpu_seconds": time.process_time() - cpu}


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    toy = args.toy
    if toy is None:
        toy = Path(tempfile.mkdtemp(prefix="llc-bench-")) / "modular_addition"
        steps = ["steps=50"] if args.smoke else []  # the LLC's cost does not depend on how well it trained
        train_toy(load_config(ToyTrainConfig, REPO / "examples" / "toy_modular_addition.toml",
                              [f"output_dir={toy}", "progress=false", "checkpoint_every=0", *steps]))
    n = toy_source(load_toy(toy), torch.device("cpu")).examples
    nbeta = default_nbeta("dataset", args.batch_size, n)
    settings = dict(step_size=args.step_size, localization=args.localization, nbeta=nbeta, chains=args.chains,
                    draws=args.draws, batch_size=args.batch_size, seed=0)
    device = torch.device(args.device)
    systems = {
        "lm_saes": lambda: ours(toy, SGLDConfig(**settings, burn_in=0.0, mala_every=0), device),
        "lm_saes_with_mala": lambda: ours(toy, SGLDConfig(**settings, burn_in=0.0), device),
        "devinterp": lambda: devinterp_llc(str(toy), {**settings, "device": args.device}),
    }
    draws = args.chains * args.draws
    rates: dict[str, list[tuple[float, float]]] = {name: [] for name in systems}
    for round_ in range(args.rounds):
        for name, run in systems.items():
            result = run()
            rate = (draws / result["seconds"], draws / result["cpu_seconds"])
            rates[name].append(rate)
            print(json.dumps({"round": round_, "system": name, "draws_per_s": round(rate[0], 1),
                              "draws_per_cpu_s": round(rate[1], 1), "llc": round(result["llc_mean"], 2)}), flush=True)
    median = {name: [statistics.median(r[i] for r in values) for i in (0, 1)] for name, values in rates.items()}
    print(json.dumps({
        "summary": {name: {"draws_per_s": round(m[0], 1), "draws_per_cpu_s": round(m[1], 1)}
                    for name, m in median.items()},
        "speedup": round(median["lm_saes"][0] / median["devinterp"][0], 2),
        "speedup_cpu_time": round(median["lm_saes"][1] / median["devinterp"][1], 2),
        "speedup_with_mala": round(median["lm_saes_with_mala"][0] / median["devinterp"][0], 2),
        "settings": {**settings, "nbeta": round(nbeta, 2), "threads": torch.get_num_threads(), "toy": str(toy),
                     "device": args.device},
        # what benchmarks/gpu_check.py reads: our draws/s over devinterp's, against the 5x target
        "ratio": round(median["lm_saes"][0] / median["devinterp"][0], 2), "target": 5.0,
        "draws_per_s": round(median["lm_saes"][0], 1), "peer_draws_per_s": round(median["devinterp"][0], 1),
    }))


if __name__ == "__main__":
    main()
