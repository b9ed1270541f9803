"""Side-by-side TopK SAE training throughput and quality, all systems in one run.

Every system trains from a fresh init on the same synthetic batches (``lm_saes.data.synthetic``:
known features in superposition, scaled to an average norm of sqrt(d)), pre-generated on the
device and cycled, so data generation is never timed:

- lm_saes  : the real ``Trainer.train_step`` (config, dictionary and normalisation as ``train()``
             builds them; AuxK and dead-feature tracking included);
- sae_lens : ``TopKTrainingSAE`` + ``SAETrainer.step`` (its own step: clip, Adam, scheduler);
- sparsify : ``SparseCoder`` forward (fused encoder, sparse decoder) + backward + Adam, with the
             decoder renormalisation, gradient projection, fire tracking and the ``float(fvu)``
             its trainer does every step (its trainer's default: no AuxK);
- naive    : a 25-line dense TopK SAE in plain torch (the baseline anyone writes).

Same learning rate and schedule for all (linear warmup, then constant). All systems stay resident
and their timed steps alternate in ``--rounds`` rounds, so a change in the machine's load hits
each alike. After ``--warmup`` untimed and ``--steps`` timed steps each prints one JSON line:
tokens/s, and the explained variance (about the mean) and L0 on a held-out batch. A last line
sums up with ``lm_saes / sparsify`` and ``lm_saes / sae_lens``. A peer that is not installed is
reported as skipped. The CPU defaults train on 36k tokens, where EV mostly reflects the
initialisation; compare quality on the GPU runs below (0.45M-0.9M tokens) or with more ``--steps``.

``--from-cache`` instead writes a synthetic activation cache (the shard format of ``lm-saes
generate``, through its own writer) and times lm-saes training from the page-cached cache
(``cache_pairs``) against the same tokens held as tensors on the device, in alternating whole
runs (target ratio >= 0.9); ``cache_wait_share`` is the part of a step spent waiting on the reader.

CPU (about two minutes on 2 cores), then the cache mode:
    .venv-peers/bin/python benchmarks/train.py
    .venv-peers/bin/python benchmarks/train.py --from-cache
GPU, the points of PERF.md (bf16 autocast is the default on CUDA):
    python benchmarks/train.py --device cuda --d 768 --m 24576 --k 64 --batch 4096 --steps 200 --warmup 20
    python benchmarks/train.py --device cuda --d 2048 --m 65536 --k 64 --batch 4096 --steps 100 --warmup 10
Add ``--variants`` for BatchTopK, JumpReLU and ReLU (lm-saes only), ``--profile`` for the top ops
of each system's step (device time on CUDA), ``--dead-after-tokens 4096`` to time lm-saes with AuxK
active, ``--systems`` to keep fewer systems in GPU memory at once. ``--twins`` also times lm-saes
with each fast path of its TopK (and BatchTopK, with ``--variants``) flipped, one at a time
(``lm_saes~sparse_backward``: the eager twin of the sparse encoder backward; ``~auxk_sync_free``
matters only with AuxK active), and sums up each as twin / default tokens/s:
    .venv-peers/bin/python benchmarks/train.py --systems lm_saes --twins --dead-after-tokens 1024
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor

import lm_saes
from lm_saes.activations.manifest import Manifest, write_manifest
from lm_saes.activations.reader import open_cache
from lm_saes.activations.writer import ShardWriter, progress_dir, read_progress
from lm_saes.config import TrainConfig, validate_config
from lm_saes.data.synthetic import make_features, sample
from lm_saes.dictionaries import VARIANTS as DICTIONARIES
from lm_saes.dictionaries import build_dictionary
from lm_saes.evaluation.metrics import explained_variance
from lm_saes.training.data import cache_pairs
from lm_saes.training.trainer import Trainer

from train_systems import Data, System, naive_system, sae_lens_system, sparsify_system, synchronize  # benchmarks/

PEERS = ("sae_lens", "sparsify")
SYSTEMS = ("lm_saes", *PEERS, "naive")
VARIANTS = ("batchtopk", "jumprelu", "relu")  # --variants: lm-saes only
NORMALIZATION_BATCHES = TrainConfig.model_fields["normalization_batches"].default


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--d", type=int, default=256, help="activation width")
    p.add_argument("--m", type=int, default=4096, help="dictionary size")
    p.add_argument("--k", type=int, default=32, help="active features per token")
    p.add_argument("--batch", type=int, default=1024, help="tokens per step")
    p.add_argument("--steps", type=int, default=30, help="timed steps per system")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first (they train too)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds (steps split)")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda")
    p.add_argument("--autocast", choices=["auto", "none", "bf16"], default="auto", help="auto: bf16 on cuda")
    p.add_argument("--systems", default=",".join(SYSTEMS), help=f"subset of {','.join(SYSTEMS)}, or lm_saes:<variant>")
    p.add_argument("--variants", action="store_true", help="also lm-saes BatchTopK, JumpReLU, ReLU")
    p.add_argument("--twins", action="store_true", help="also lm-saes with each fast path flipped")
    p.add_argument("--lr", type=float, default=4e-4, help="Adam learning rate of every system")
    p.add_argument("--lr-warmup", type=int, default=None, help="warmup steps (default: 10%% of all)")
    p.add_argument("--pool", type=int, default=8, help="distinct training batches, cycled")
    p.add_argument("--features", type=int, default=None, help="true features (default m/2)")
    p.add_argument("--l1-coefficient", type=float, default=2.0, help="ReLU variant")
    p.add_argument("--l0-coefficient", type=float, default=0.05, help="JumpReLU variant")
    p.add_argument("--dead-after-tokens", type=int, default=None, help="lm-saes dead threshold (AuxK)")
    p.add_argument("--profile", action="store_true", help="print each system's top ops")
    p.add_argument("--from-cache", action="store_true", help="cache vs in-memory lm-saes training")
    p.add_argument("--cache-shards", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3, help="--from-cache: alternating runs of each")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    args.device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                               else "cpu" if args.device == "auto" else args.device)
    args.bf16 = args.autocast == "bf16" or (args.autocast == "auto" and args.device.type == "cuda")
    args.total_steps = args.warmup + args.steps
    args.commit = lm_saes_commit()
    args.lr_warmup = max(1, args.total_steps // 10) if args.lr_warmup is None else args.lr_warmup
    unknown = {s for s in args.systems.split(",") if s.partition(":")[0] not in SYSTEMS
               or s.partition(":")[2] not in ("", "topk", *VARIANTS)}
    if unknown:
        p.error(f"--systems: unknown {sorted(unknown)}; choose from {','.join(SYSTEMS)}")
    return args


# --- data ---------------------------------------------------------------------------------------


def make_data(args: argparse.Namespace) -> Data:
    """Pool and held-out batches (generated on the CPU, then moved), scaled to norm sqrt(d)."""
    n_features = args.features or args.m // 2
    features = make_features(n_features, args.d, mean_active=args.k / 2, decay=0.5, seed=args.seed)
    generator = torch.Generator().manual_seed(args.seed + 1)
    raw = [sample(features, args.batch, generator) for _ in range(args.pool + 1)]  # [batch, d] each
    scale = args.d**0.5 / float(torch.cat(raw).norm(dim=1).mean())
    batches = [(x * scale).to(args.device) for x in raw]
    return Data(batches[:-1], batches[-1], features, scale)


# --- the systems --------------------------------------------------------------------------------


def lm_saes_system(dictionary: dict, args: argparse.Namespace, head: list[Tensor], flip: str = "") -> System:
    """A Trainer as ``train()`` builds it: validated config, seeded init, scales fit on ``head``;
    ``flip``: a fast path (``Dictionary.fast_paths``) set to the opposite of its default."""
    cfg = validate_config(TrainConfig, {
        "dictionary": dictionary, "output_dir": str(Path(tempfile.gettempdir()) / "unused"),
        "total_tokens": args.total_steps * args.batch, "batch_size": args.batch, "lr": args.lr,
        "lr_warmup_steps": args.lr_warmup, "lr_decay": "constant", "seed": args.seed,
        "device": str(args.device), "autocast": "bfloat16" if args.bf16 else "none", "progress": False,
        **({"dead_after_tokens": args.dead_after_tokens} if args.dead_after_tokens else {}),
    })
    torch.manual_seed(cfg.seed)
    trainer = Trainer(cfg, build_dictionary(cfg.dictionary, args.d, args.d), args.device)
    trainer.initialize([(x, x) for x in head[: cfg.normalization_batches]])
    sae = trainer.dictionary
    if flip:
        setattr(sae, flip, not getattr(sae, flip))

    def evaluate(x: Tensor) -> tuple[Tensor, Tensor]:
        sae.eval()  # BatchTopK: the inference threshold
        out = sae(x * sae.input_scale)
        sae.train()
        return out.recon / sae.output_scale, out.acts

    return System(lambda x: trainer.train_step(x, x), evaluate)


def build(name: str, args: argparse.Namespace, data: Data) -> System:
    """A system by label: ``lm_saes``, ``lm_saes:<variant>``, either with ``~<fast path>`` flipped,
    or a peer/baseline name."""
    name, _, flip = name.partition("~")
    name, _, kind = name.partition(":")
    if name == "lm_saes":
        return lm_saes_system(variant_config(kind or "topk", args), args, data.pool, flip)
    return {"sae_lens": sae_lens_system, "sparsify": sparsify_system, "naive": naive_system}[name](args, data)


def twin_labels(labels: list[str]) -> list[str]:
    """``label~switch`` for each fast path of each lm-saes label's dictionary."""
    twins = []
    for label in labels:
        name, _, kind = label.partition(":")
        if name == "lm_saes":
            twins += [f"{label}~{switch}" for switch in DICTIONARIES[kind or "topk"].fast_paths]
    return twins


def variant_config(kind: str, args: argparse.Namespace) -> dict:
    knobs = {"topk": {"k": args.k}, "batchtopk": {"k": args.k},
             "jumprelu": {"l0_coefficient": args.l0_coefficient},
             "relu": {"l1_coefficient": args.l1_coefficient}}[kind]
    return {"kind": kind, "d_sae": args.m, **knobs}


# --- measuring ----------------------------------------------------------------------------------


def run_steps(system: System, batches: Iterator[Tensor], n: int, device: torch.device) -> tuple[float, float]:
    """Seconds for ``n`` steps (the device synchronized on both sides), and of those the seconds
    spent waiting for the next batch."""
    synchronize(device)
    start, waiting = time.perf_counter(), 0.0
    for _ in range(n):
        asked = time.perf_counter()
        x = next(batches)
        waiting += time.perf_counter() - asked
        system.step(x)
    synchronize(device)
    return time.perf_counter() - start, waiting


@torch.no_grad()
def quality(system: System, held_out: Tensor) -> dict:
    recon, acts = system.evaluate(held_out)
    return {"explained_variance": round(float(explained_variance(recon.float(), held_out)), 5),
            "l0": round(float((acts != 0).float().sum(-1).mean()), 2)}


def measure(runs: dict[str, tuple[System, Iterator[Tensor]]], held_out: Tensor, args: argparse.Namespace) -> dict:
    """Warm every system up, then time their steps in ``--rounds`` interleaved rounds (so a change
    in the machine's load hits all of them), then EV and L0 of each on ``held_out``."""
    for system, batches in runs.values():
        run_steps(system, batches, args.warmup, args.device)
    seconds, waiting = dict.fromkeys(runs, 0.0), dict.fromkeys(runs, 0.0)
    for n in [len(chunk) for chunk in torch.arange(args.steps).tensor_split(args.rounds)]:
        for name, (system, batches) in runs.items():
            spent, waited = run_steps(system, batches, n, args.device)
            seconds[name] += spent
            waiting[name] += waited
    return {name: {"tokens_per_s": round(args.steps * args.batch / seconds[name]),
                   "step_ms": round(1e3 * seconds[name] / args.steps, 2),
                   "batch_wait_ms": round(1e3 * waiting[name] / args.steps, 3), **quality(system, held_out)}
            for name, (system, _) in runs.items()}


def profile(system: System, batches: Iterator[Tensor], args: argparse.Namespace, n_steps: int = 5) -> list[dict]:
    """The ops taking most of a step's time (self time; device time on CUDA)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    cuda = args.device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with torch_profile(activities=activities) as prof:
        for x in itertools.islice(batches, n_steps):
            system.step(x)
        synchronize(args.device)
    events = prof.key_averages()
    key = "self_device_time_total" if cuda else "self_cpu_time_total"
    total = sum(getattr(e, key) for e in events) or 1.0
    top = sorted(events, key=lambda e: -getattr(e, key))[:12]
    return [{"op": e.key, "ms_per_step": round(getattr(e, key) / 1e3 / n_steps, 3),
             "share": round(getattr(e, key) / total, 3), "calls_per_step": e.count // n_steps} for e in top]


def header(args: argparse.Namespace) -> dict:
    cuda = args.device.type == "cuda"
    device = torch.cuda.get_device_name(args.device) if cuda else f"cpu ({torch.get_num_threads()} threads)"
    return {"benchmark": "train", "device": device, "torch": torch.__version__,
            "d": args.d, "m": args.m, "k": args.k, "batch": args.batch, "steps": args.steps,
            "warmup": args.warmup, "autocast": "bf16" if args.bf16 else "none", "lr": args.lr,
            "lm_saes_commit": args.commit}


def lm_saes_commit() -> str | None:
    """HEAD of the lm_saes checkout, ``+dirty`` if its package files differ (they change under benchmarks)."""
    root = Path(lm_saes.__file__).resolve().parents[1]
    git = ["git", "-C", str(root)]
    try:
        head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run([*git, "status", "--porcelain", "--", "lm_saes"], capture_output=True, text=True).stdout
    except OSError:
        return None
    return (head + ("+dirty" if dirty.strip() else "")) or None


def emit(record: dict) -> None:
    print(json.dumps(record), flush=True)


def side_by_side(args: argparse.Namespace) -> None:
    data = make_data(args)
    labels = args.systems.split(",") + (["lm_saes:" + v for v in VARIANTS] if args.variants else [])
    labels += twin_labels(labels) if args.twins else []
    runs: dict[str, tuple[System, Iterator[Tensor]]] = {}
    for label in labels:  # all resident at once, so that their timed rounds can alternate
        try:
            system = build(label, args, data)
        except ImportError as e:
            emit({**header(args), "system": label, "skipped": f"{label} is not importable ({e})"})
            continue
        except Exception as e:  # a peer whose API moved is reported, not allowed to hide the others
            if label not in PEERS:
                raise
            emit({**header(args), "system": label, "error": f"{type(e).__name__}: {e}"[:300]})
            continue
        runs[label] = (system, itertools.cycle(data.pool))
    results = measure(runs, data.held_out, args)
    for label, result in results.items():
        emit({**header(args), "system": label, "train_tokens": args.total_steps * args.batch, **result})
    if args.profile:
        for label, (system, batches) in runs.items():
            emit({"benchmark": "train", "profile": label, "top_ops": profile(system, batches, args)})
    summary = {**header(args), "summary": True,
               **{f"{s}_tokens_per_s": r["tokens_per_s"] for s, r in results.items()},
               **{f"{s}_explained_variance": r["explained_variance"] for s, r in results.items()}}
    for peer in (*PEERS, "naive"):
        if "lm_saes" in results and peer in results:
            ratio = results["lm_saes"]["tokens_per_s"] / results[peer]["tokens_per_s"]
            summary[f"lm_saes_over_{peer}"] = round(ratio, 3)
    summary["target_lm_saes_over_sparsify"] = 3.0  # PERF.md, on the GPU
    for label, result in results.items():  # each fast path flipped against the default: below 1, the default wins
        default = results.get(label.split("~")[0])
        if "~" in label and default:
            summary[f"{label}_over_default"] = round(result["tokens_per_s"] / default["tokens_per_s"], 3)
    emit(summary)


# --- training from the cache --------------------------------------------------------------------


def write_cache(root: Path, data: Data, args: argparse.Namespace) -> Path:
    """A 1d bfloat16 cache of the same synthetic distribution, written by generate's own writer."""
    hook = "blocks.0.hook_resid_post"
    (root / hook).mkdir(parents=True)
    progress_dir(root).mkdir()
    n_tokens = args.total_steps * args.batch
    bounds = [n_tokens * i // args.cache_shards for i in range(args.cache_shards + 1)]
    generator = torch.Generator().manual_seed(args.seed + 2)
    with ShardWriter(root, rank=0) as writer:
        for chunk, (start, stop) in enumerate(zip(bounds, bounds[1:])):
            acts = (sample(data.features, stop - start, generator) * data.scale).to(torch.bfloat16)
            tokens = torch.zeros(stop - start, dtype=torch.int32)
            writer.submit(chunk, {hook: {"activations": acts, "tokens": tokens}}, ready=None)
    done = read_progress(root)
    write_manifest(root / hook, Manifest(
        lm_saes_version=lm_saes.__version__, model="synthetic", hook=hook, d_model=args.d, dtype="bfloat16",
        layout="1d", context_size=args.batch, n_tokens=n_tokens, n_contexts=args.total_steps,
        shards=[done[i][hook] for i in range(args.cache_shards)], config={"benchmark": "train"},
    ))
    shutil.rmtree(progress_dir(root))
    return root / hook


def from_cache(args: argparse.Namespace) -> None:
    """lm-saes TopK from the page-cached cache vs from the same tokens as device tensors."""
    data = make_data(args)
    with tempfile.TemporaryDirectory(prefix="lm_saes-train-bench-") as tmp:
        hook_dir = write_cache(Path(tmp), data, args)
        cache = open_cache(hook_dir)
        tokens = torch.cat([cache.load_shard(i, ["activations"])["activations"] for i in range(len(cache.shards))])
        in_memory = tokens.to(args.device, torch.float32)  # [n_tokens, d]; reading it warms the page cache
        order = torch.randperm(len(in_memory), generator=torch.Generator().manual_seed(args.seed))
        memory_batches = list(in_memory[order.to(args.device)].split(args.batch))  # all full: n = steps x batch

        def run(source: str) -> dict:
            """One whole training run from ``source``; its reader thread stops before the next."""
            pairs = cache_pairs(hook_dir, None, args.batch, args.seed, args.device) if source == "cache" \
                else ((x, x) for x in itertools.cycle(memory_batches))
            head = [x for x, _ in itertools.islice(pairs, NORMALIZATION_BATCHES)]  # train() fits scales on these
            system = lm_saes_system(variant_config("topk", args), args, head)
            try:
                batches = itertools.chain(head, (x for x, _ in pairs))
                return measure({source: (system, batches)}, data.held_out, args)[source]
            finally:
                pairs.close()

        runs: dict[str, list[dict]] = {"cache": [], "memory": []}
        for _ in range(args.repeats):
            for source in runs:
                runs[source].append(run(source))
                emit({**header(args), "mode": "from_cache", "source": source, "repeat": len(runs[source]),
                      **runs[source][-1]})
    median = {s: statistics.median(r["tokens_per_s"] for r in rs) for s, rs in runs.items()}
    emit({**header(args), "mode": "from_cache", "summary": True, "n_shards": args.cache_shards,
          "cache_tokens_per_s": round(median["cache"]), "memory_tokens_per_s": round(median["memory"]),
          "ratio": round(median["cache"] / median["memory"], 3),
          "cache_wait_share": round(statistics.median(r["batch_wait_ms"] / r["step_ms"] for r in runs["cache"]), 4),
          "ratio_per_repeat": [round(c["tokens_per_s"] / m["tokens_per_s"], 3)
                               for c, m in zip(runs["cache"], runs["memory"])],
          "target": 0.9})


def main() -> None:
    args = parse_args()
    from_cache(args) if args.from_cache else side_by_side(args)


if __name__ == "__main__":
    main()
