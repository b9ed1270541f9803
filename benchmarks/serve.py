"""Feature-page latency of a real ``lm-saes serve``: the API response and the page render; prints JSON lines.

Starts ``python -m lm_saes serve`` on a free port over an existing store (the quickstart's by
default: run ``bash scripts/quickstart.sh`` first), then measures

- api: GET /api/dictionaries/{d}/features/{i} for ``--n`` seeded random feature indices, first
  (cold) and repeated (warm), median and p95 in ms; plus the feature list
  (?sort=density&order=desc&limit=50) and /api/dictionaries/{d}. Target (feature page): < 100 ms.
- assets: each file of the UI's build, its size and the bytes sent (gzip) with its Cache-Control;
- render: headless chromium (ui/e2e/render-timing.mjs, playwright-core) navigates to
  /dictionaries/{d}/features/{i} for ``--n-render`` features that fire and times until the top
  contexts' tokens are visible; median and p95 in ms. Target: < 1 s. Then the home, dictionary
  and feature pages from a fresh browser (no cache) and again.

The server is terminated at the end (killed if it does not stop). Example:
    python benchmarks/serve.py --dictionary topk --store work/store --n 50
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stats(ms: list[float]) -> dict:
    s = sorted(ms)
    p95 = s[min(len(s) - 1, max(0, round(0.95 * len(s)) - 1))]
    return {"n": len(s), "median_ms": round(statistics.median(s), 2), "p95_ms": round(p95, 2),
            "max_ms": round(s[-1], 2)}


class Client:
    """One keep-alive HTTP connection, as a browser would reuse."""

    def __init__(self, port: int):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def get(self, path: str) -> tuple[int, bytes, float]:
        t0 = time.perf_counter()
        self.conn.request("GET", path)
        res = self.conn.getresponse()
        body = res.read()
        return res.status, body, (time.perf_counter() - t0) * 1000

    def json(self, path: str):
        status, body, _ = self.get(path)
        if status != 200:
            raise RuntimeError(f"GET {path} gave {status}: {body[:200]!r}")
        return json.loads(body)


def start_server(store: str, port: int, log) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "lm_saes", "serve", "--port", str(port), "--set", f"store.data_dir={store}"]
    return subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def wait_health(proc: subprocess.Popen, port: int, timeout: float) -> float:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before answering /api/health")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/api/health")
            if conn.getresponse().status == 200:
                return time.perf_counter() - t0
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server did not answer /api/health in {timeout} s")


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    try:  # anything the server started in its session
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def bench_api(client: Client, dictionary: str, d_sae: int, n: int, repeats: int, rng: random.Random) -> dict:
    d = quote(dictionary, safe="")
    indices = rng.sample(range(d_sae), min(n, d_sae))
    cold, warm, statuses = [], [], {}
    for i in indices:
        status, _, ms = client.get(f"/api/dictionaries/{d}/features/{i}")
        statuses[status] = statuses.get(status, 0) + 1
        cold.append(ms)
    for _ in range(repeats):
        for i in indices:
            warm.append(client.get(f"/api/dictionaries/{d}/features/{i}")[2])
    other = {}
    for label, path in [("list", f"/api/dictionaries/{d}/features?sort=density&order=desc&limit=50"),
                        ("dictionary", f"/api/dictionaries/{d}")]:
        times = []
        for _ in range(repeats + 1):
            status, _, ms = client.get(path)
            if status != 200:
                raise RuntimeError(f"GET {path} gave {status}")
            times.append(ms)
        other[label] = {"first_ms": round(times[0], 2), **stats(times[1:])}
    feature = {"cold": stats(cold), "warm": stats(warm), "statuses": {str(k): v for k, v in statuses.items()}}
    return {"feature": feature, **other, "target_ms": 100,
            "feature_meets_target": max(feature["cold"]["p95_ms"], feature["warm"]["p95_ms"]) < 100}


def firing_indices(client: Client, dictionary: str, n: int, rng: random.Random) -> list[int]:
    """``n`` seeded random indices among the features that fire (density > 0)."""
    d = quote(dictionary, safe="")
    page = client.json(f"/api/dictionaries/{d}/features?min_density=1e-300&limit=1")
    total = page["total"]
    picks = []
    for skip in rng.sample(range(total), min(n, total)):
        picks.append(client.json(f"/api/dictionaries/{d}/features?min_density=1e-300&skip={skip}&limit=1")["items"][0]["index"])
    return picks


def bench_render(port: int, dictionary: str, indices: list[int]) -> dict:
    node = shutil.which("node")
    if node is None:
        return {"skipped": "node not found"}
    script = REPO / "ui" / "e2e" / "render-timing.mjs"
    out = subprocess.run([node, str(script), f"http://127.0.0.1:{port}", dictionary, *map(str, indices)],
                         cwd=REPO / "ui", capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise RuntimeError(f"render-timing.mjs failed ({out.returncode}): {out.stderr[-2000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    ms = result["ms"]
    s = stats(ms)
    return {"indices": indices, "first_ms": round(ms[0], 2), "all": s,
            "after_first": stats(ms[1:]) if len(ms) > 1 else None, "pages": result["pages"],
            "page_errors": result["page_errors"], "target_ms": 1000, "meets_target": s["p95_ms"] < 1000}


def bench_assets(port: int) -> dict:
    """The UI's files as sent: bytes on disk, bytes sent gzip-compressed, their cache policy."""
    static = REPO / "lm_saes" / "server" / "static"
    index = (static / "index.html").read_text() if (static / "index.html").is_file() else ""
    sizes = {}
    for path in sorted(static.glob("assets/*")):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", f"/assets/{path.name}", headers={"Accept-Encoding": "gzip"})
        res = conn.getresponse()
        sent = len(res.read())
        sizes[path.name] = {"bytes": path.stat().st_size, "sent_bytes": sent,
                            "encoding": res.getheader("content-encoding"), "cache_control": res.getheader("cache-control"),
                            "linked": path.name in index}
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dictionary", default="topk")
    parser.add_argument("--store", default="work/store", help="store.data_dir of the embedded store")
    parser.add_argument("--n", type=int, default=50, help="feature indices for the API timing")
    parser.add_argument("--repeats", type=int, default=3, help="warm passes over the indices")
    parser.add_argument("--n-render", type=int, default=10, help="feature pages rendered in chromium")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-render", action="store_true", help="skip the browser timing")
    args = parser.parse_args()

    store = str(Path(args.store).resolve())
    port = free_port()
    rng = random.Random(args.seed)
    with tempfile.TemporaryFile() as log:
        t0 = time.perf_counter()
        proc = start_server(store, port, log)
        try:
            ready_s = wait_health(proc, port, timeout=120)
            client = Client(port)
            d = quote(args.dictionary, safe="")
            detail = client.json(f"/api/dictionaries/{d}")
            d_sae = detail.get("d_sae") or (detail.get("analysis") or {}).get("n_features")
            print(json.dumps({"benchmark": "serve", "part": "startup", "dictionary": args.dictionary,
                              "d_sae": d_sae, "port": port, "health_after_s": round(ready_s, 2)}), flush=True)
            print(json.dumps({"benchmark": "serve", "part": "assets", "files": bench_assets(port)}), flush=True)
            api = bench_api(client, args.dictionary, d_sae, args.n, args.repeats, rng)
            print(json.dumps({"benchmark": "serve", "part": "api", "n": args.n, "repeats": args.repeats,
                              "seed": args.seed, **api}), flush=True)
            if not args.no_render:
                indices = firing_indices(client, args.dictionary, args.n_render, rng)
                render = bench_render(port, args.dictionary, indices)
                print(json.dumps({"benchmark": "serve", "part": "render", **render}), flush=True)
        except Exception:
            log.seek(0)
            sys.stderr.write(log.read()[-4000:].decode(errors="replace"))
            raise
        finally:
            stop_server(proc)


if __name__ == "__main__":
    main()
