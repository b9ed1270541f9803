"""An analyzed dictionary in an embedded store (built once a session), and the fake OpenAI server
(``fake_openai.py``) started as a real process per test."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import NamedTuple

import pytest

from lm_saes.activations.generate import generate
from lm_saes.analysis.stage import run_analysis
from lm_saes.config import AnalyzeConfig, GenerateConfig, StoreConfig, TrainConfig, load_config
from lm_saes.store import open_store, stop_server
from lm_saes.training.train import train

HOOK = "blocks.1.hook_resid_post"
CTX = 24
D_SAE = 48
NAME = "sae"
FAKE = Path(__file__).with_name("fake_openai.py")


class Analyzed(NamedTuple):
    store: StoreConfig
    name: str
    dictionary_dir: Path
    cache: Path  # the 2d cache (also what the dictionary trained on)


@pytest.fixture(autouse=True)
def _no_mongo_uri(monkeypatch):
    monkeypatch.delenv("MONGO_URI", raising=False)


@pytest.fixture(scope="session")
def analyzed(tmp_path_factory, model_dir, dataset_file) -> Analyzed:
    """A TopK SAE trained on a 2d cache of the tiny model, analyzed into its own embedded store."""
    root = tmp_path_factory.mktemp("interpret")
    generate(load_config(GenerateConfig, None, [
        f"model.name={model_dir}", f"data.path={dataset_file}", f"data.context_size={CTX}",
        f"data.max_tokens={CTX * 120}", f'hooks=["{HOOK}"]', f"output_dir={root / 'cache'}", "layout=2d",
        "batch_size=32", "progress=false", "disk_headroom_gb=0",
    ]))
    cache = root / "cache" / HOOK
    train(load_config(TrainConfig, None, [
        f"cache={cache}", f"output_dir={root / 'sae'}", "total_tokens=8192", "batch_size=256", "lr=3e-3",
        "lr_warmup_steps=5", "progress=false", "checkpoint_every=0", "device=cpu",
        "dictionary.kind=topk", f"dictionary.d_sae={D_SAE}", "dictionary.k=4",
    ]))
    store = StoreConfig(data_dir=root / "store", timeout_s=5)
    run_analysis(AnalyzeConfig(dictionary=root / "sae", cache=cache, dictionary_name=NAME, top_k=6, window=3,
                               n_bands=2, per_band=2, device="cpu", progress=False, store=store))
    yield Analyzed(store, NAME, root / "sae", cache)
    stop_server(store.data_dir)


@pytest.fixture()
def store(analyzed):
    with open_store(analyzed.store) as s:
        yield s


class FakeServer(NamedTuple):
    url: str  # the API root, .../v1
    proc: subprocess.Popen

    def requests(self) -> list[dict]:
        with urllib.request.urlopen(self.url.removesuffix("/v1") + "/stats", timeout=10) as r:
            return json.load(r)["requests"]


@pytest.fixture()
def fake_server():
    """``fake_server(*args)``: start fake_openai.py with these arguments; stopped after the test."""
    started = []

    def start(*args: str) -> FakeServer:
        proc = subprocess.Popen([sys.executable, str(FAKE), *args], stdout=subprocess.PIPE, text=True)
        started.append(proc)
        line = proc.stdout.readline()
        assert line.startswith("port "), f"the fake server did not start: {line!r}"
        return FakeServer(f"http://127.0.0.1:{int(line.split()[1])}/v1", proc)

    yield start
    for proc in started:
        proc.terminate()
        proc.wait(timeout=10)
