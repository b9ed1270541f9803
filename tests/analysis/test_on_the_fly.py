"""`lm-saes analyze` on the fly (``sources.ModelSource``) against a cache-based analysis.

The comparison cache is a float32 2d cache of the same model, data and hook as conftest.py's
(packing off, CTX-token contexts; generate never shuffles 2d contexts) whose forwards batch the
contexts as the analysis does (one chunk, batch_size=BATCH), so both analyses encode identical
activations and every document must match exactly.
"""

from __future__ import annotations

import pytest
import torch

from lm_saes.activations.generate import generate
from lm_saes.activations.reader import open_cache
from lm_saes.analysis import analyze_features
from lm_saes.analysis.sources import ModelSource
from lm_saes.analysis.stage import run_analysis
from lm_saes.config import AnalyzeConfig, AnalyzeSourceConfig, GenerateConfig, StoreConfig, load_config
from lm_saes.dictionaries import Dictionary
from lm_saes.errors import ConfigError
from lm_saes.models.backend import load_language_model
from lm_saes.store import open_store

HOOK, CTX, N_CONTEXTS = "blocks.1.hook_resid_post", 24, 120  # as built in conftest.py

BATCH = 7
SETTINGS = dict(top_k=6, window=3, n_bands=4, per_band=3, histogram_bins=16, n_logits=5, n_neighbors=4,
                batch_size=BATCH, device="cpu", seed=3, progress=False)
DATA = {"context_size": CTX, "packing": False, "max_tokens": CTX * N_CONTEXTS}


@pytest.fixture(scope="module")
def source_cfg(model_dir, varied_docs_file) -> AnalyzeSourceConfig:
    return AnalyzeSourceConfig.model_validate({
        "model": {"name": str(model_dir), "device": "cpu"},
        "data": {"path": str(varied_docs_file), **DATA}, "hook": HOOK,
    })


@pytest.fixture(scope="module")
def float32_cache(tmp_path_factory, model_dir, varied_docs_file):
    root = tmp_path_factory.mktemp("analysis-cache-f32")
    generate(load_config(GenerateConfig, None, [
        f"model.name={model_dir}", "model.device=cpu", f"data.path={varied_docs_file}",
        f"data.context_size={CTX}", "data.packing=false", f"data.max_tokens={CTX * N_CONTEXTS}",
        f'hooks=["{HOOK}"]', f"output_dir={root}", "layout=2d", "dtype=float32", "shard_size_mb=64",
        f"batch_size={BATCH}", "progress=false", "disk_headroom_gb=0",
    ]))
    return open_cache(root / HOOK)


@pytest.fixture(scope="module")
def both(float32_cache, source_cfg, dictionary_dir, tokenizer, W_U):
    """(summary, docs) from the float32 cache, then from the model on the fly."""
    results = []
    for fields, source in [
        ({"cache": float32_cache.hook_dir}, float32_cache),
        ({"on_the_fly": source_cfg}, ModelSource(load_language_model(source_cfg.model), source_cfg)),
    ]:
        cfg = AnalyzeConfig(dictionary=dictionary_dir, **fields, **SETTINGS)
        summary, docs = analyze_features(cfg, Dictionary.from_pretrained(dictionary_dir), source, tokenizer, W_U)
        results.append((summary, list(docs)))
    return results


def test_on_the_fly_documents_equal_the_cache_based_ones(both, truth):
    (cached, cached_docs), (live, live_docs) = both
    assert live["n_contexts"] == cached["n_contexts"] == N_CONTEXTS
    assert live["n_tokens"] == cached["n_tokens"] == int(truth.analyzed.sum())  # same contexts as conftest's cache
    for key in ["model", "hook", "context_size", "d_sae", "alive_fraction", "dead_fraction", "density_histogram"]:
        assert live[key] == cached[key], key
    assert any(d["n_fired"] > 0 for d in live_docs) and any(q["examples"] for d in live_docs for q in d["quantiles"])
    assert live_docs == cached_docs  # counts, density, max, mean, top, bands (pass 2), histograms: exact


def test_on_the_fly_summary_names_its_source(both, varied_docs_file):
    (cached, _), (live, _) = both
    assert live["cache"] == f"on the fly: {varied_docs_file}"
    assert live["config"]["cache"] is None and live["config"]["on_the_fly"]["hook"] == HOOK
    assert cached["cache"].endswith(HOOK)


def test_model_source_repeats_itself(source_cfg):
    """Two passes over a ModelSource see the same contexts, ids and activations in the same order."""
    source = ModelSource(load_language_model(source_cfg.model), source_cfg)
    assert source.n_contexts(None) == N_CONTEXTS and source.n_contexts(10) == 10
    first, second = (list(source.batches(16, torch.device("cpu"), 0, max_contexts=40)) for _ in range(2))
    assert [len(b.tokens) for b in first] == [16, 16, 8]
    assert torch.equal(torch.cat([b.context_ids for b in first]), torch.arange(40))
    for a, b in zip(first, second):
        for name in ["activations", "tokens", "context_ids", "valid", "analyzed"]:
            assert torch.equal(getattr(a, name), getattr(b, name)), name


@pytest.mark.parametrize("sources", [["cache=/tmp/some-cache"], []], ids=["both", "neither"])
def test_config_needs_exactly_one_source(dictionary_dir, model_dir, varied_docs_file, sources):
    live = [f"on_the_fly.model.name={model_dir}", f"on_the_fly.data.path={varied_docs_file}",
            f"on_the_fly.hook={HOOK}"]
    overrides = [f"dictionary={dictionary_dir}"] + sources + (live if sources else [])
    which = "both are set" if sources else "neither is set"
    with pytest.raises(ConfigError, match=f"set exactly one of `cache`.*`on_the_fly`.*{which}"):
        load_config(AnalyzeConfig, None, overrides)


def test_on_the_fly_analysis_lands_in_the_store_without_a_cache_record(
    tmp_path, source_cfg, dictionary_dir, varied_docs_file, monkeypatch,
):
    monkeypatch.delenv("MONGO_URI", raising=False)
    cfg = AnalyzeConfig(dictionary=dictionary_dir, on_the_fly=source_cfg, dictionary_name="live-sae", top_k=3,
                        window=2, n_bands=2, per_band=1, device="cpu", progress=False,
                        store=StoreConfig(data_dir=tmp_path / "store"))
    stored = run_analysis(cfg)
    with open_store(cfg.store) as store:
        assert store.caches() == []
        assert [m["name"] for m in store.models()] == [str(source_cfg.model.name)]
        assert store.count_features("live-sae") == stored.n_features
        [run] = store.analyses("live-sae")
        assert run["status"] == "complete"
    assert stored.summary["cache"] == f"on the fly: {varied_docs_file}"
