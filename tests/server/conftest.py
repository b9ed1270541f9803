"""A real analysis in an embedded store, built once a session: a 2d cache of the tiny model, a
trained TopK dictionary, `run_analysis` into a temporary store, its features explained and scored
by `lm-saes interpret`'s offline default (the lexical baseline); plus two dictionary records
without analyses (one with no source model, one whose input hook is not in the model), and on
request a real sweep over the same cache (two TopK members and a diverging one, PCA and ICA
baselines) recorded in the same store, its first member analyzed too; and on request TMS 5-2 decompositions analyzed into the same store (a short
SPD run, and the session's full one)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import NamedTuple

import pytest
from fastapi.testclient import TestClient

from lm_saes.activations.generate import generate
from lm_saes.analysis.stage import run_analysis
from lm_saes.config import AnalyzeConfig, GenerateConfig, StoreConfig, TrainConfig, load_config
from lm_saes.interpret.config import InterpretConfig
from lm_saes.interpret.stage import run_interpret
from lm_saes.server import create_app
from lm_saes.store import open_store, stop_server
from lm_saes.sweep.config import SweepConfig
from lm_saes.sweep.run import run_sweep
from lm_saes.training.train import train
from lm_saes.spd.config import load_train_config
from lm_saes.spd.train import train_spd
from tests.server.served import BAD_HOOK, BARE, CTX, D_SAE, HOOK, LM_SPD, NAME, SHORT_SPD, SPD, SWEEP, SWEPT_MEMBER

class Stored(NamedTuple):
    store: StoreConfig
    dictionary_dir: Path
    model_dir: Path


@pytest.fixture(scope="session")
def stored(tmp_path_factory, model_dir, dataset_file) -> Stored:
    root = tmp_path_factory.mktemp("server")
    generate(load_config(GenerateConfig, None, [
        f"model.name={model_dir}", f"data.path={dataset_file}", f"data.context_size={CTX}",
        f"data.max_tokens={CTX * 80}", f'hooks=["{HOOK}"]', f"output_dir={root / 'cache'}", "layout=2d",
        "batch_size=32", "progress=false", "disk_headroom_gb=0",
    ]))
    dictionary_dir = root / "sae"
    train(load_config(TrainConfig, None, [
        f"cache={root / 'cache' / HOOK}", f"output_dir={dictionary_dir}", "total_tokens=4096", "batch_size=256",
        "lr=3e-3", "lr_warmup_steps=5", "progress=false", "checkpoint_every=0", "device=cpu",
        "dictionary.kind=topk", f"dictionary.d_sae={D_SAE}", "dictionary.k=4",
    ]))
    store = StoreConfig(data_dir=root / "store", timeout_s=2)
    run_analysis(AnalyzeConfig(
        dictionary=dictionary_dir, cache=root / "cache" / HOOK, dictionary_name=NAME, top_k=5, window=10,
        n_bands=3, per_band=2, device="cpu", progress=False, store=store,
    ))
    run_interpret(InterpretConfig(dictionary=NAME, store=store, device="cpu", progress=False))
    with open_store(store) as s:
        s.upsert_dictionary(BARE, {"kind": "topk", "d_sae": 4, "d_in": 32})
        s.upsert_dictionary(BAD_HOOK, {
            "kind": "topk", "d_sae": D_SAE, "d_in": 32, "path": str(dictionary_dir),
            "source": {"model": str(model_dir), "hook_in": "blocks.9.hook_nowhere"},
        })
    yield Stored(store, dictionary_dir, model_dir)
    stop_server(store.data_dir)


@pytest.fixture(scope="session")
def swept(stored, tmp_path_factory) -> dict:
    """The record of sweep SWEEP, run over the stored analysis's cache into its store, its first
    member analyzed by the sweep as SWEPT_MEMBER (the sweep page links it by its directory)."""
    out = tmp_path_factory.mktemp("sweep")
    cache = stored.dictionary_dir.parent / "cache" / HOOK
    train = {"cache": str(cache), "total_tokens": 1024, "batch_size": 128, "lr": 3e-3, "lr_warmup_steps": 2,
             "log_every": 4, "device": "cpu", "normalization_batches": 2, "normalize_activations": False,
             "dictionary": {"kind": "topk", "d_sae": D_SAE, "k": 4}}
    result = run_sweep(SweepConfig.model_validate({
        "name": SWEEP, "output_dir": str(out), "train": train, "progress": False, "store": stored.store,
        "baselines": ["pca", "ica"], "eval": {"tokens": 512, "batch_size": 128, "ce_tokens": 4 * CTX,
                                              "ce_batch_size": 4, "device": "cpu"},
        "variants": {"topk": {"grid": {"dictionary.k": [2, 4]}}, "unstable": {"set": {"lr": 1e30}}},
        "analyze": {"members": ["topk-k2"], "settings": {"cache": str(cache), "top_k": 3, "window": 2,
                                                         "n_bands": 0, "per_band": 0, "device": "cpu"}},
    }))
    return result.record


def analyze_decomposition_into(store: StoreConfig, directory: Path, name: str) -> None:
    run_analysis(AnalyzeConfig(dictionary=directory, target_inputs=4000, dictionary_name=name, top_k=6, n_bands=2,
                               per_band=2, device="cpu", progress=False, store=store))


@pytest.fixture(scope="session")
def short_decomposed(stored, tms_5_2_dir, tmp_path_factory) -> Path:
    """examples/spd_tms_5-2.toml for 600 steps (~6 s) on the session's TMS 5-2, analyzed as SHORT_SPD."""
    out = tmp_path_factory.mktemp("spd") / "short"
    example = Path(__file__).parents[2] / "examples" / "spd_tms_5-2.toml"
    train_spd(load_train_config(example, [f"target.path={tms_5_2_dir}", f"output_dir={out}", "steps=600",
                                          "progress=false", "device=cpu"]))
    analyze_decomposition_into(stored.store, out, SHORT_SPD)
    return out


@pytest.fixture(scope="session")
def decomposed(stored, tms_5_2_spd) -> Path:
    """The session's full TMS 5-2 decomposition (tests/conftest.py), analyzed as SPD."""
    analyze_decomposition_into(stored.store, tms_5_2_spd.output_dir, SPD)
    return tms_5_2_spd.output_dir


@pytest.fixture(scope="session")
def lm_decomposed(stored, model_dir, dataset_file, tmp_path_factory) -> Path:
    """Two SPD steps on two matrices of the tiny model (a few seconds), analyzed as LM_SPD."""
    out = tmp_path_factory.mktemp("spd") / "lm"
    train_spd(load_train_config(None, [
        "target.kind=language_model", f"target.model.name={model_dir}", f"target.data.path={dataset_file}",
        f"target.data.context_size={CTX}", "target.data.max_tokens=1024", f"output_dir={out}", "steps=2",
        "batch_size=2", "eval_examples=2", "spd.C=4", 'spd.modules=["transformer.h.0.mlp.c_fc", "transformer.h.1.attn.c_proj"]',
        "spd.importance_coefficient=1e-3", "spd.faithfulness_warmup_steps=2", "progress=false", "device=cpu"]))
    run_analysis(AnalyzeConfig(dictionary=out, target_inputs=8, dictionary_name=LM_SPD, top_k=3, window=2, n_bands=0,
                               device="cpu", progress=False, store=stored.store))
    return out


@pytest.fixture(scope="module")
def client(stored, tmp_path_factory) -> TestClient:
    """The app over the stored analysis, serving a fake UI build (index.html, one asset, the UI's
    routes.json)."""
    static = tmp_path_factory.mktemp("static")
    (static / "assets").mkdir()
    (static / "index.html").write_text("<!doctype html><div id=root>UI</div>")
    (static / "assets" / "app.js").write_text("console.log('ui') // " + "x" * 2000)  # worth compressing
    shutil.copy(Path(__file__).parents[2] / "ui" / "src" / "routes.json", static / "routes.json")
    with TestClient(create_app(stored.store, static_dir=static, device="cpu")) as c:
        yield c


@pytest.fixture()
def store(stored):
    with open_store(stored.store) as s:
        yield s
