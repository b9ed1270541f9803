"""Benchmark a sweep over one read of the cache against the same members trained one by one.

Writes a synthetic 1d cache (``--tokens`` x ``--d-model``, bfloat16) and warms the page cache,
runs both kinds once untimed on two batches (the first run of a process pays one-off costs), then
times, side by side in one process and alternating which goes first (``--repeats``; medians):

- together: ``train_together`` on ``--members`` TopK members (k = 8, 16, 24, ... by default):
  each batch read once, the members stepped as one stacked model (``--members-per-stack``; the
  sweep's default: all on a GPU, one a stack on the CPU, where stacks are slower), the stacks' steps
  side by side on worker threads (``--member-workers``; default one per core on the CPU);
- sequential: ``lm_saes.train`` on each member's own TrainConfig in turn (eight reads).

Every member's weights must come out bit-identical both ways (checked; a mismatch fails the
run). Prints one JSON object; ``speedup`` = sequential / together wall time (target on a GPU:
>= 3 for 8 members).

    python benchmarks/sweep.py --device cpu --tokens 400000 --d-model 128 --d-sae 2048
    python benchmarks/sweep.py --device cuda --tokens 4000000 --d-model 768 --d-sae 24576
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

import lm_saes
from lm_saes.config import validate_config
from lm_saes.dictionaries import Dictionary
from lm_saes.sweep.config import SweepConfig
from lm_saes.sweep.members import expand_members
from lm_saes.sweep.together import train_together
from lm_saes.training.train import train
from read import write_synthetic_cache  # benchmarks/read.py


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=400_000, help="activations in the cache (one epoch)")
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--d-sae", type=int, default=2048)
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--members-per-stack", type=int, default=0,
                        help="members to a stacked model (0: the sweep's choice, all on a GPU, 1 on the CPU)")
    parser.add_argument("--member-workers", type=int, default=0,
                        help="threads stepping members side by side (0: the sweep's choice, one per core on the CPU)")
    parser.add_argument("--repeats", type=int, default=2, help="alternating timed runs of each kind (medians)")
    parser.add_argument("--dir", type=Path, help="work here and keep the files (default: temp)")
    return parser.parse_args()


def sweep_config(args: argparse.Namespace, cache: Path, out: Path) -> SweepConfig:
    return validate_config(SweepConfig, {
        "name": "bench", "output_dir": str(out), "record": False, "progress": False, "baselines": [],
        "train": {"cache": str(cache), "total_tokens": args.tokens, "batch_size": args.batch_size,
                  "device": args.device, "log_every": 1_000_000, "checkpoint_every": 0,
                  "dictionary": {"kind": "topk", "d_sae": args.d_sae, "k": 8}},
        "grid": {"dictionary.k": [8 * (i + 1) for i in range(args.members)]},
    })


def run_together(members: list, args: argparse.Namespace) -> None:
    train_together(members, stream_seed=0, members_per_stack=args.members_per_stack, member_workers=args.member_workers)


def run_alone(members: list, out: Path) -> None:
    for m in members:
        train(m.train.model_copy(update={"output_dir": out / m.name}))


def timed(action) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    action()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.dir or Path(tmp)
        cache = root / "cache" / "hook"
        write_synthetic_cache(cache, args.tokens, args.d_model, n_shards=4)
        for _ in lm_saes.open_cache(cache).batches(args.batch_size):  # warm the page cache
            pass
        warm = argparse.Namespace(**{**vars(args), "tokens": 2 * args.batch_size})
        run_together(expand_members(sweep_config(warm, cache, root / "warm-together")), args)
        run_alone(expand_members(sweep_config(warm, cache, root / "warm-together")), root / "warm-alone")
        together, sequential = [], []
        for r in range(args.repeats):  # alternate, so neither kind always runs first
            members = expand_members(sweep_config(args, cache, root / f"together-{r}"))
            kinds = [(together, lambda: run_together(members, args)),
                     (sequential, lambda: run_alone(members, root / f"alone-{r}"))]
            for times, action in kinds[:: 1 if r % 2 == 0 else -1]:
                times.append(timed(action))
            alone = [m.train.model_copy(update={"output_dir": root / f"alone-{r}" / m.name}) for m in members]
        identical = all(
            all(torch.equal(a, b) for a, b in zip(Dictionary.from_pretrained(m.train.output_dir).state_dict().values(),
                                                  Dictionary.from_pretrained(cfg.output_dir).state_dict().values()))
            for m, cfg in zip(members, alone)
        )
        together_s, sequential_s = statistics.median(together), statistics.median(sequential)
        member_tokens = args.members * (args.tokens // args.batch_size) * args.batch_size
        print(json.dumps({
            "device": str(torch.cuda.get_device_name() if torch.cuda.is_available() and args.device != "cpu" else "cpu"),
            "threads": torch.get_num_threads(), "members": args.members, "members_per_stack": args.members_per_stack,
            "member_workers": args.member_workers,
            "tokens": args.tokens,
            "d_model": args.d_model, "d_sae": args.d_sae, "batch_size": args.batch_size,
            "together_s": round(together_s, 2), "sequential_s": round(sequential_s, 2),
            "together_runs_s": [round(t, 2) for t in together], "sequential_runs_s": [round(t, 2) for t in sequential],
            "together_member_tok_per_s": round(member_tokens / together_s),
            "sequential_member_tok_per_s": round(member_tokens / sequential_s),
            "speedup": round(sequential_s / together_s, 3), "identical_weights": identical,
        }))
        if not identical:
            raise SystemExit("the members trained together differ from the members trained alone")


if __name__ == "__main__":
    main()
