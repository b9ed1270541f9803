"""The UI end to end in headless Chromium against the real `lm-saes serve` (ui/e2e/run.mjs).

The server is started exactly as a user would (the CLI, a free port, the session's stored
analysis and sweep record, whose first member links to the analyzed dictionary, and the session's full
TMS 5-2 decomposition and a short one of the tiny model analyzed into the same store); the node script
drives Debian's chromium through playwright-core, one spec per page (ui/e2e/pages/), at 1280x900
and at 390x844 with touch: it compares what the pages draw with the API's documents (every token
of every context, its shading and peak mark; a newline peak; test-on-my-text; steering at a strong
and a zero strength; a TMS 5-2 decomposition's page, its plane plot and a component page; live inference on a
language model's decomposition; the summary line in the feature list, token search, feature page, nearest
features and inference; 404 statuses), checks by element geometry that no text leaves a phone's
screen, and saves screenshots (to $LM_SAES_SCREENSHOTS, e.g. docs/screenshots, or a temporary
directory). Needs the built UI and chromium; scripts/test.sh provides both.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.server.served import LM_SPD, NAME, SPD, SWEEP

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("LM_SAES_CHROMIUM", "/usr/bin/chromium")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"lm-saes serve exited: {proc.stderr.read().decode()[-3000:]}"
        try:
            with urllib.request.urlopen(f"{url}/api/health", timeout=2) as r:
                if json.load(r)["status"] == "ok":
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"lm-saes serve did not answer at {url} within {timeout} s")


@pytest.mark.slow  # ~30-40 s on two shared cores: two viewports, a model load, steering
def test_the_ui_shows_the_stored_features_in_chromium(stored, swept, decomposed, lm_decomposed, tmp_path):
    assert (ROOT / "lm_saes/server/static/index.html").is_file(), \
        "the UI is not built: npm --prefix ui ci && npm --prefix ui run build (scripts/test.sh does it)"
    assert Path(CHROMIUM).is_file() and shutil.which("node"), \
        "needs node and chromium: apt-get install -y --no-install-recommends chromium (scripts/test.sh does it)"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    serve = [sys.executable, "-m", "lm_saes", "serve", "--port", str(port), "--set",
             f"store.data_dir={stored.store.data_dir}", "--set", "device=cpu"]
    proc = subprocess.Popen(serve, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=tmp_path)
    try:
        wait_healthy(url, proc)
        shots = Path(os.environ.get("LM_SAES_SCREENSHOTS", tmp_path / "screenshots"))
        env = {**os.environ, "LM_SAES_URL": url, "LM_SAES_DICTIONARY": NAME, "LM_SAES_SWEEP": SWEEP, "LM_SAES_DECOMPOSITION": SPD,
               "LM_SAES_LM_DECOMPOSITION": LM_SPD,
               "LM_SAES_SCREENSHOTS": str(shots), "LM_SAES_CHROMIUM": CHROMIUM}
        run = subprocess.run(["node", str(ROOT / "ui/e2e/run.mjs")], env=env, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
        print(run.stdout)  # every step with its time (pytest -rP shows it)
        for name in ("dictionary.png", "feature.png", "feature-mobile.png", "test-text.png", "steer.png", "infer.png",
                     "sweep.png", "decomposition.png", "component.png", "decomposition-mobile.png", "component-mobile.png", "decomposition-infer.png"):
            assert (shots / name).stat().st_size > 10_000, name
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) is not None
