"""Every performance target of PERF.md (and issue 18's) measured in one run; prints one table and
writes it as JSON. Run it through ``benchmarks/gpu_check.sh``, which sets up the interpreters.

Each benchmark of ``benchmarks/`` runs as its own process with its own time cap (cut to what is
left of ``--budget``), at PERF.md's shapes on a GPU or at tiny shapes with ``--smoke``. Each
PERF.md target becomes a row: the measured figure, the peer's figure, their ratio, the target and
pass / FAIL, "info" where no target applies, or "not measured: <why>" (a benchmark that is absent,
failed, ran out of time, or needs another machine). Absolute GPU targets are judged only on CUDA.

    python benchmarks/gpu_check.py --smoke --out check.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

HERE = Path(__file__).resolve().parent
MODEL_BUILDERS = ("generate.py", "analyze.py")  # benchmarks that build and run a language model
Row = dict  # {"measure", "figure", "peer", "peer_figure", "ratio", "target", "status"}
Outputs = list[dict]  # the JSON lines a benchmark printed


class Check(NamedTuple):
    name: str
    script: str  # file in benchmarks/
    args: list[str]
    cap_s: int
    rows: Callable[[Outputs], list[Row]]
    measures: list[str]  # the rows' names, for "not measured" rows when it does not run
    peers: bool = False  # run under the peers' interpreter


def row(measure: str, figure=None, target: str = "-", status: str = "info", peer: str = "", peer_figure=None,
        ratio=None) -> Row:
    return {"measure": measure, "figure": figure, "peer": peer, "peer_figure": peer_figure, "ratio": ratio,
            "target": target, "status": status}


def judged(ok: bool) -> str:
    return "pass" if ok else "FAIL"


# --- what each benchmark's output means -------------------------------------------------------


def training_rows(cuda: bool, absolute: bool) -> Callable[[Outputs], list[Row]]:
    """Rows of ``train.py``'s side-by-side run: speed against each peer, quality against the best."""

    def rows(out: Outputs) -> list[Row]:
        systems = {r["system"]: r for r in out if "system" in r and "tokens_per_s" in r}
        skipped = {r["system"]: r.get("skipped") or r.get("error") for r in out if "system" in r and "tokens_per_s" not in r}
        mine = systems["lm_saes"]
        label = f"TopK d={mine['d']} m={mine['m']} k={mine['k']}"
        speed, found = mine["tokens_per_s"], []
        for peer, goal in (("sparsify", 3.0), ("sae_lens", None), ("naive", None)):
            measure = f"{label}: lm-saes / {peer} tokens/s"
            if peer not in systems:
                why = skipped.get(peer) or f"{peer} not run in this mode"
                found.append(row(measure, speed, status=f"not measured: {why}"[:160]))
                continue
            ratio = speed / systems[peer]["tokens_per_s"]
            status = (judged(ratio >= goal) if cuda else "info (the target is for a GPU)") if goal else "info"
            found.append(row(measure, speed, f">= {goal}x" if goal else "-", status, peer, systems[peer]["tokens_per_s"],
                             round(ratio, 3)))
        if absolute:
            for goal, what in ((1.7e6, "PERF.md target"), (2.6e6, "30% of the encoder ceiling")):
                status = judged(speed >= goal) if cuda else "not measured: absolute target, needs an H100"
                found.append(row(f"{label}: lm-saes tokens/s ({what})", speed, f">= {goal / 1e6:.1f}M", status))
        peers = {name: r["explained_variance"] for name, r in systems.items() if name in ("sparsify", "sae_lens", "naive")}
        quality = f"{label}: explained variance after {mine['train_tokens']} tokens"
        if peers:
            best = max(peers, key=peers.get)
            ev = mine["explained_variance"]
            found.append(row(quality, ev, ">= best peer", judged(ev >= peers[best]), best, peers[best],
                             round(ev / peers[best], 3) if peers[best] > 0 else None))
        else:
            found.append(row(quality, mine["explained_variance"], status="not measured: no peer ran"))
        for name, r in systems.items():
            if name.startswith("lm_saes:"):
                found.append(row(f"{label}: {name.split(':')[1]} tokens/s (EV {r['explained_variance']})",
                                 r["tokens_per_s"], peer="lm-saes topk", peer_figure=speed,
                                 ratio=round(r["tokens_per_s"] / speed, 3)))
        return found

    return rows


def last(out: Outputs, key: str) -> dict:
    found = [r for r in out if key in r]
    if not found:
        raise KeyError(f"no output line has {key!r}")
    return found[-1]


def from_cache_rows(out: Outputs) -> list[Row]:
    s = last(out, "cache_tokens_per_s")
    return [row("training from the page-cached cache / from memory", s["cache_tokens_per_s"], ">= 0.9",
                judged(s["ratio"] >= 0.9), "in memory", s["memory_tokens_per_s"], s["ratio"])]


def read_rows(out: Outputs) -> list[Row]:
    r = last(out, "ratio")
    needs = r["training_needs"]["gb_per_s"]
    return [row("reader / gathering from memory (tokens/s)", r["reader"]["tokens_per_s"], ">= 0.9",
                judged(r["ratio"] >= 0.9), "in memory", r["in_memory"]["tokens_per_s"], r["ratio"]),
            row("reader GB/s / what training at 1.7M tokens/s needs", r["reader"]["gb_per_s"], ">= 1",
                judged(r["reader_over_needs"] >= 1), "needed", needs, r["reader_over_needs"])]


def generate_rows(out: Outputs) -> list[Row]:
    r = last(out, "generate_over_ceiling")
    ceiling = min(r["forward_tokens_per_s"], r["disk_tokens_per_s"])
    return [row("generation / min(model forward, disk)", r["generate_tokens_per_s"], ">= 0.8",
                judged(r["generate_over_ceiling"] >= 0.8), "ceiling", ceiling, r["generate_over_ceiling"])]


def sweep_rows(cuda: bool) -> Callable[[Outputs], list[Row]]:
    def rows(out: Outputs) -> list[Row]:
        r = last(out, "speedup")
        goal = 3.0 if cuda else 1.0
        ok = r["speedup"] >= goal if cuda else r["speedup"] > goal
        # Bit-identical weights are a CPU property; on a GPU scatters use atomics (equal up to rounding).
        same = r["identical_weights"] or cuda
        return [row(f"sweep of {r['members']} together / one by one, d={r['d_model']} m={r['d_sae']} "
                    f"(identical weights: {r['identical_weights']})",
                    r["together_member_tok_per_s"], f">= {goal}x" if cuda else "> 1x (CPU)",
                    judged(ok and same), "one by one", r["sequential_member_tok_per_s"], r["speedup"])]

    return rows


def twin_rows(out: Outputs) -> list[Row]:
    """Each fast path flipped against lm-saes' default (train.py --twins): a ratio above 1 says the
    flipped setting is faster on this machine, so the default should change."""
    systems = {r["system"]: r for r in out if "system" in r and "tokens_per_s" in r}
    found = []
    for label, r in systems.items():
        if "~" not in label or label.split("~")[0] not in systems:
            continue
        base, switch = label.split("~")
        default = systems[base]["tokens_per_s"]
        ratio = r["tokens_per_s"] / default
        kind = base.partition(":")[2] or "topk"
        found.append(row(f"{kind} d={r['d']} m={r['m']} k={r['k']}: {switch} flipped / default tokens/s (AuxK on)",
                         r["tokens_per_s"], "<= 1 (the default is faster)", judged(ratio <= 1), "default", default,
                         round(ratio, 3)))
    return found


def analyze_rows(out: Outputs) -> list[Row]:
    r = last(out, "analysis_over_encode")
    return [row("analysis time / the encoder's own pass", r["tokens_per_s"]["analysis"], "<= 1.5",
                judged(r["analysis_over_encode"] <= 1.5), "encoder", r["tokens_per_s"]["encode"],
                r["analysis_over_encode"])]


def optional_rows(name: str) -> Callable[[Outputs], list[Row]]:
    """SPD / LLC benchmarks, added later: their last JSON line's ratio and target, when given."""

    def rows(out: Outputs) -> list[Row]:
        r = out[-1]
        ratio, target = r.get("ratio"), r.get("target")
        status = judged(ratio >= target) if isinstance(ratio, (int, float)) and isinstance(target, (int, float)) else "info"
        figure = {k: v for k, v in r.items() if isinstance(v, (int, float))}
        return [row(name, figure, str(target or "-"), status, ratio=ratio)]

    return rows


# --- the checks ---------------------------------------------------------------------------------


def checks(smoke: bool, cuda: bool) -> list[Check]:
    device = "cuda" if cuda else "cpu"

    def shape(d: int, m: int, steps: int) -> list[str]:
        """PERF.md's training shapes (k 64, batch 4096), or tiny ones under --smoke."""
        if smoke:
            return ["--d", str(d // 24), "--m", str(m // 96), "--k", "8", "--batch", "128", "--steps", "4",
                    "--warmup", "1", "--rounds", "2"]
        return ["--d", str(d), "--m", str(m), "--k", "64", "--batch", "4096", "--steps", str(steps),
                "--warmup", str(steps // 10)]

    train = ["--device", device]
    found = [
        Check("train_d768", "train.py", train + shape(768, 24576, 200) + ["--variants"], 100,
              training_rows(cuda, True), ["TopK training d=768 m=24576 k=64"], peers=True),
        Check("train_d2048", "train.py", train + shape(2048, 65536, 100) + (["--systems", "lm_saes,naive"] if smoke else []),
              110, training_rows(cuda, False), ["TopK training d=2048 m=65536 k=64"], peers=not smoke),
        Check("train_from_cache", "train.py", train + ["--from-cache", "--systems", "lm_saes"] + shape(768, 24576, 100) + (
            ["--repeats", "1", "--cache-shards", "2"] if smoke else ["--repeats", "2"]),
              60, from_cache_rows, ["training from the page-cached cache"]),
        Check("read", "read.py", ["--device", device] + (
            ["--tokens", "20000", "--d-model", "32", "--shards", "4", "--batch-size", "512", "--repeats", "2"]
            if smoke else ["--tokens", "4000000", "--repeats", "3"]), 45, read_rows, ["reader"]),
        Check("generate", "generate.py", ["--device", device] + (
            ["--tokens", "8192", "--ctx", "64", "--batch", "16", "--shard-mb", "1"] if smoke else
            ["--preset", "gpt2-small", "--model-dtype", "bfloat16", "--ctx", "1024", "--batch", "32",
             "--tokens", "2000000"]), 60, generate_rows, ["generation"]),
        Check("sweep", "sweep.py", ["--device", device] + (
            ["--tokens", "16384", "--d-model", "16", "--d-sae", "64", "--members", "2", "--batch-size", "1024",
             "--repeats", "1"] if smoke else ["--tokens", "2000000", "--d-model", "768", "--d-sae", "24576"]),
              90, sweep_rows(cuda), ["sweep"]),
        # Small dictionaries, where one alone leaves a GPU idle and the stack fills it.
        Check("sweep_small", "sweep.py", ["--device", device] + (
            ["--tokens", "16384", "--d-model", "8", "--d-sae", "32", "--members", "2", "--batch-size", "1024",
             "--repeats", "1"] if smoke else ["--tokens", "2000000", "--d-model", "128", "--d-sae", "2048"]),
              60, sweep_rows(cuda), ["sweep of small dictionaries"]),
        # Every fast path of TopK and BatchTopK against its eager twin, AuxK active (a dead window of one batch).
        Check("train_twins", "train.py", train + shape(768, 24576, 100) + [
            "--systems", "lm_saes,lm_saes:batchtopk", "--twins", "--dead-after-tokens", "128" if smoke else "4096"],
              60, twin_rows, ["fast paths against their eager twins"]),
        Check("analyze", "analyze.py", ["--device", device] + (
            ["--tokens", "4096", "--ctx", "32", "--d-sae", "256", "--k", "8", "--threads", "1"] if smoke else
            ["--preset", "gpt2-small", "--d-sae", "24576", "--tokens", "1048576", "--batch-size", "64",
             "--repeats", "2"]), 75, analyze_rows, ["analysis"]),
    ]
    for name in ("spd", "llc"):  # added later as benchmarks/spd.py and benchmarks/llc.py
        found.append(Check(name, f"{name}.py", ["--device", device] + (["--smoke"] if smoke else []), 45,
                           optional_rows(name.upper()), [name.upper()], peers=name == "llc"))  # llc beside devinterp
    return found


STANDING = [  # targets no benchmark here measures yet, and why
    row("training from a cold cache, bounded by disk read bandwidth",
        status="not measured: needs the page cache dropped (root, /proc/sys/vm/drop_caches); not attempted"),
    row("tokens each system needs to reach a fixed explained variance",
        status="not measured: benchmarks/train.py reports EV after a fixed budget, not tokens to a fixed EV"),
]


# --- running ------------------------------------------------------------------------------------


def run(check: Check, python: str, cap_s: float) -> tuple[list[Row], dict]:
    """Run one benchmark; its rows, or "not measured" rows saying why."""
    script = HERE / check.script
    record = {"script": check.script, "args": check.args, "cap_s": round(cap_s)}
    if not script.is_file():
        return [row(m, status="not measured: benchmark absent") for m in check.measures], {**record, "status": "absent"}
    if cap_s < 10:
        return [row(m, status="not measured: out of the time budget") for m in check.measures], {**record, "status": "skipped"}
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    start = time.perf_counter()
    try:
        done = subprocess.run([python, str(script), *check.args], cwd=HERE, env=env, capture_output=True,
                              text=True, timeout=cap_s)
    except subprocess.TimeoutExpired:
        why = f"not measured: over its {cap_s:.0f} s cap"
        return [row(m, status=why) for m in check.measures], {**record, "status": "timeout"}
    record["seconds"] = round(time.perf_counter() - start, 1)
    outputs = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    record["outputs"] = outputs
    if done.returncode != 0 or not outputs:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        record.update(status="failed", stderr=done.stderr[-4000:])
        return [row(m, status=f"not measured: failed ({tail})"[:200]) for m in check.measures], record
    try:
        return check.rows(outputs), {**record, "status": "ok"}
    except (KeyError, TypeError, ZeroDivisionError) as e:
        return [row(m, status=f"not measured: unexpected output ({e!r})") for m in check.measures], record


def table(rows: list[Row]) -> str:
    """The rows as a fixed-width text table."""
    def text(value) -> str:
        if value is None:
            return ""
        if isinstance(value, float):
            return f"{value:.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
        if isinstance(value, int) and abs(value) >= 1e4:
            return f"{value:,}"
        return str(value) if not isinstance(value, dict) else json.dumps(value)[:40]

    header = ["measure", "figure", "peer", "peer figure", "ratio", "target", "pass/fail"]
    cells = [[text(r[k]) for k in ("measure", "figure", "peer", "peer_figure", "ratio", "target", "status")] for r in rows]
    widths = [max(len(c[i]) for c in [header, *cells]) for i in range(len(header))]
    widths[-1] = len(header[-1])
    lines = [" | ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines.append("-+-".join("-" * w for w in widths))
    lines += [" | ".join(c.ljust(w) for c, w in zip(cells_row, widths)) for cells_row in cells]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU (what the test runs)")
    p.add_argument("--out", type=Path, default=Path("gpu_check.json"), help="the table as JSON")
    p.add_argument("--budget", type=float, default=480, help="seconds for all the benchmarks together")
    p.add_argument("--peers-python", default=sys.executable, help="interpreter with sae-lens and sparsify")
    p.add_argument("--only", help="comma-separated check names (default: all)")
    p.add_argument("--jobs", type=int, help="benchmarks run at once (default: 1, or 2 with --smoke, whose figures "
                   "mean nothing anyway)")
    args = p.parse_args()

    import torch  # the benchmarks' own interpreter is this one

    cuda = torch.cuda.is_available() and not args.smoke
    device = torch.cuda.get_device_name() if cuda else f"cpu ({os.cpu_count()} cores)"
    deadline = time.perf_counter() + args.budget
    chosen = [c for c in checks(args.smoke, cuda) if not args.only or c.name in args.only.split(",")]

    def one(check: Check) -> tuple[list[Row], dict]:
        python = os.path.abspath(args.peers_python) if check.peers else sys.executable
        found, record = run(check, python, min(check.cap_s * (3 if args.smoke else 1), deadline - time.perf_counter()))
        print(f"[gpu_check] {check.name}: {record['status']} ({record.get('seconds', 0)} s)", file=sys.stderr, flush=True)
        return found, record

    with ThreadPoolExecutor(args.jobs or (2 if args.smoke else 1)) as pool:
        # The two that build a language model first: run side by side, they take longest.
        started = {c.name: pool.submit(one, c) for c in sorted(chosen, key=lambda c: c.script not in MODEL_BUILDERS)}
        results = {name: future.result() for name, future in started.items()}
    rows = [r for check in chosen for r in results[check.name][0]] + STANDING
    runs = {check.name: results[check.name][1] for check in chosen}
    result = {"device": device, "torch": torch.__version__, "smoke": args.smoke, "budget_s": args.budget,
              "rows": rows, "runs": runs}
    args.out.write_text(json.dumps(result, indent=1))
    print(f"{device}, torch {torch.__version__}{', smoke shapes (not PERF.md figures)' if args.smoke else ''}")
    print(table(rows))


if __name__ == "__main__":
    main()
