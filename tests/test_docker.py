"""docker-compose.yml, the Dockerfile and .dockerignore, checked without an engine: the structure is
valid, every variable is set, the server talks to the compose MongoDB, its command is one `lm-saes`
accepts, its healthcheck tells a serving API from one without a store, and the build context holds
what the Dockerfile copies and nothing a checkout accumulates (venvs, work/, node_modules)."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import uvicorn
import yaml
from docker.utils.build import exclude_paths

from lm_saes.cli import build_parser
from lm_saes.config import StoreConfig
from lm_saes.server import create_app
from lm_saes.store import open_store, stop_server

ROOT = Path(__file__).resolve().parents[1]
MAX_CONTEXT_BYTES = 5 * 2**20  # the package, the UI sources, pyproject and the README: under 1 MB today


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_services_volumes_and_ports():
    spec = compose()
    assert set(spec["services"]) == {"mongo", "server"}
    named = set(spec["volumes"])
    for service in spec["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source.startswith(("${", "/", ".")) or source in named, f"undeclared volume {source}"
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{port} would expose an unauthenticated service"
    mongo, server = spec["services"]["mongo"], spec["services"]["server"]
    assert mongo["image"].startswith("mongo:") and "healthcheck" in mongo and "healthcheck" in server
    assert server["depends_on"]["mongo"]["condition"] == "service_healthy"
    assert server["environment"]["MONGO_URI"] == "mongodb://mongo:27017"  # the service name, the default port
    assert server["build"] == "." and (ROOT / "Dockerfile").is_file()


def test_every_variable_is_required_or_defaulted():
    text = (ROOT / "docker-compose.yml").read_text()
    uses = re.findall(r"\$\{([^}]*)\}", text)
    assert uses, "the project mount uses ${PWD}"
    for use in uses:
        assert re.fullmatch(r"PWD(:\?.+)?", use), f"${{{use}}} is neither PWD nor given a default/error"


def test_the_server_command_is_a_valid_lm_saes_serve():
    spec = compose()
    command = spec["services"]["server"]["command"]
    assert command[0] == "lm-saes"
    args = build_parser().parse_args(command[1:])
    assert (args.command, args.host, args.port) == ("serve", "0.0.0.0", 8000)
    container_port = int(spec["services"]["server"]["ports"][0].split(":")[-1])
    assert container_port == args.port
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert '"lm-saes", "serve", "--host", "0.0.0.0", "--port", "8000"' in dockerfile
    for source in re.findall(r"^COPY (?!--from)(\S+(?: \S+)*) \S+$", dockerfile, flags=re.M):
        for path in source.split():
            assert (ROOT / path).exists(), f"the Dockerfile copies {path}, which the repository lacks"


def context_files(root: Path) -> set[str]:
    """The files `docker build root` sends, by docker-py's implementation of the engine's
    .dockerignore rules (last matching pattern wins, ``!`` re-includes, ``**`` any depth)."""
    ignore = root / ".dockerignore"
    lines = ignore.read_text().splitlines() if ignore.is_file() else []
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    return {p for p in exclude_paths(str(root), patterns, "Dockerfile") if (root / p).is_file()}


def test_the_build_context_is_what_the_dockerfile_copies(tmp_path):
    """A checkout as a developer's looks after `scripts/test.sh` and the quick start: only the
    Dockerfile's sources reach the engine, not the venvs (GBs), work/, the host's node_modules
    (which `COPY ui ui` would lay over the container's `npm ci`) or a host UI build."""
    kept = ["pyproject.toml", "README.md", "lm_saes/__init__.py", "lm_saes/server/app.py", "ui/package.json",
            "ui/package-lock.json", "ui/src/main.tsx", "ui/vite.config.ts"]
    dropped = [".venv/bin/python", ".venv-peers/lib/sae_lens.py", "work/store/lm_saes.db", "work/cache/shard.safetensors",
               "ui/node_modules/esbuild/bin/esbuild", "ui/node_modules/.package-lock.json", "ui/dist/index.html",
               "lm_saes/server/static/index.html", "lm_saes/server/static/assets/app.js", "lm_saes/__pycache__/cli.pyc",
               "lm_saes.egg-info/PKG-INFO", ".git/HEAD", "tests/test_cli.py", "docs/screenshots/feature.png"]
    for path in kept + dropped:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("x")
    for name in ("Dockerfile", ".dockerignore"):
        (tmp_path / name).write_text((ROOT / name).read_text())
    assert context_files(tmp_path) == {"Dockerfile", ".dockerignore", *kept}

    real = context_files(ROOT)  # this checkout, whatever it holds
    size = sum((ROOT / p).stat().st_size for p in real)
    assert size < MAX_CONTEXT_BYTES, f"the build context is {size / 2**20:.1f} MiB"
    assert {p.split("/")[0] for p in real} <= {"Dockerfile", ".dockerignore", "pyproject.toml", "README.md", "lm_saes", "ui"}
    assert not [p for p in real if p.startswith(("ui/node_modules/", "lm_saes/server/static/")) or "__pycache__" in p]
    assert "lm_saes/cli.py" in real and "ui/package-lock.json" in real and "ui/src/main.tsx" in real
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert dockerfile.index("npm --prefix ui ci") < dockerfile.index("COPY ui ui")  # the clean install comes first


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_server_healthcheck_fails_until_the_store_answers(tmp_path, monkeypatch):
    """The compose healthcheck, run as the container would against a real server: unhealthy while
    the API answers 503 (no store yet), healthy once `lm-saes analyze` has written one."""
    monkeypatch.delenv("MONGO_URI", raising=False)
    check = compose()["services"]["server"]["healthcheck"]
    assert check["test"][0] == "CMD" and check["retries"] >= 1
    assert "http://127.0.0.1:8000/api/health" in check["test"][-1]  # the port `serve` listens on in the image
    port = _free_port()
    command = [sys.executable if arg == "python" else arg.replace(":8000/", f":{port}/") for arg in check["test"][1:]]
    cfg = StoreConfig(data_dir=tmp_path / "store", timeout_s=2)
    server = uvicorn.Server(uvicorn.Config(create_app(cfg, static_dir=tmp_path, device="cpu"), host="127.0.0.1",
                                           port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.started
        assert subprocess.run(command, capture_output=True).returncode != 0  # 503: no store yet
        with open_store(cfg) as store:
            store.upsert_dictionary("d", {"kind": "topk"})
        run = subprocess.run(command, capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
    finally:
        server.should_exit = True
        thread.join(30)
        stop_server(cfg.data_dir)
