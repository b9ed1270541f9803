"""Store logic on mongomock: registry, runs that replace each other, feature queries."""

from __future__ import annotations

import pytest

from lm_saes.errors import StoreError
from lm_saes.store import SCHEMA_VERSION, Store
from lm_saes.store.schema import ANALYSES, DETAILS, FEATURES, META


def _analyze(store, feature, n=5, scale=1.0, name="default", **interpretations):
    with store.begin_analysis("d", name, meta={"top_k": 1}, n_features=n) as w:
        w.write_features(feature(i, scale, **({"interpretation": interpretations[f"f{i}"]} if f"f{i}" in interpretations else {}))
                         for i in range(n))
        return w.complete({"tokens": 1000})


def test_registry_upserts_replace_by_name(mock_store):
    mock_store.upsert_dictionary("d", {"d_sae": 5, "hook": "blocks.0.hook_resid_post"})
    mock_store.upsert_dictionary("d", {"d_sae": 6})
    mock_store.upsert_model("tiny", {"n_layers": 3})
    mock_store.upsert_cache("cache", {"tokens": 10})
    [d] = mock_store.dictionaries()
    assert d["d_sae"] == 6 and "hook" not in d and d["analyses"] == []
    assert mock_store.dictionary("d")["d_sae"] == 6 and mock_store.dictionary("nope") is None
    assert [m["name"] for m in mock_store.models()] == ["tiny"]
    assert [c["name"] for c in mock_store.caches()] == ["cache"]
    with pytest.raises(StoreError, match="'name' equal to 'd'"):
        mock_store.upsert_dictionary("d", {"name": "e"})


def test_an_analysis_needs_a_registered_dictionary(mock_store):
    with pytest.raises(StoreError, match=r"upsert_dictionary\('ghost'"):
        mock_store.begin_analysis("ghost")


def test_complete_run_is_shown_whole(mock_store, feature):
    mock_store.upsert_dictionary("d")
    run = _analyze(mock_store, feature, f3="cats and dogs")
    assert run["status"] == "complete" and run["summary"] == {"tokens": 1000} and run["n_written"] == 5
    assert mock_store.analysis("d")["id"] == run["id"]
    f = mock_store.feature("d", 3)
    assert f["interpretation"] == "cats and dogs" and f["top_contexts"][0]["tokens"][1] == " cat"
    assert f["dictionary"] == "d" and f["analysis"] == "default" and f["analysis_id"] == run["id"]
    assert mock_store.feature("d", 99) is None and mock_store.feature("d", 0, analysis="other") is None
    assert mock_store.dictionaries()[0]["analyses"] == ["default"]


def test_rerun_replaces_the_previous_run(mock_store, feature):
    mock_store.upsert_dictionary("d")
    first = _analyze(mock_store, feature, scale=1.0)
    second = _analyze(mock_store, feature, scale=2.0)
    assert [r["id"] for r in mock_store.analyses("d")] == [second["id"]]
    assert mock_store.feature("d", 2)["max_activation"] == 6.0
    assert mock_store.db[FEATURES].count_documents({"analysis_id": first["id"]}) == 0
    assert mock_store.db[DETAILS].count_documents({}) == 5


def test_exception_mid_write_keeps_the_previous_run(mock_store, feature):
    mock_store.upsert_dictionary("d")
    first = _analyze(mock_store, feature, scale=1.0)
    with pytest.raises(RuntimeError, match="interrupted"):
        with mock_store.begin_analysis("d", n_features=5) as w:
            w.write_features(feature(i, 2.0) for i in range(3))
            raise RuntimeError("interrupted")
    runs = {r["status"]: r for r in mock_store.analyses("d")}
    assert runs["failed"]["error"] == "RuntimeError: interrupted"
    assert mock_store.analysis("d")["id"] == first["id"]
    assert [f["max_activation"] for f in mock_store.features("d")] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert mock_store.db[FEATURES].count_documents({"analysis_id": runs["failed"]["id"]}) == 0
    # the next run cleans the failed one up and replaces the first
    _analyze(mock_store, feature, scale=3.0)
    assert [r["status"] for r in mock_store.analyses("d")] == ["complete"]


def test_a_run_must_be_completed(mock_store, feature):
    mock_store.upsert_dictionary("d")
    with pytest.raises(StoreError, match=r"closed without complete\(\); it is marked failed"):
        with mock_store.begin_analysis("d") as w:
            w.write_features([feature(0)])
    with pytest.raises(StoreError, match="failed; begin a new analysis"):
        w.write_features([feature(1)])
    assert mock_store.analysis("d") is None


def test_missing_and_duplicate_features_fail_the_run(mock_store, feature):
    mock_store.upsert_dictionary("d")
    with pytest.raises(StoreError, match="expected 5"):
        with mock_store.begin_analysis("d", n_features=5) as w:
            w.write_features(feature(i) for i in range(4))
            w.complete()
    with pytest.raises(StoreError, match="feature index 2 was written twice"):
        with mock_store.begin_analysis("d") as w:
            w.write_features([feature(1), feature(2)])
            w.write_features([feature(2)])
    with pytest.raises(StoreError, match="out of range for 5 features"):
        with mock_store.begin_analysis("d", n_features=5) as w:
            w.write_features([feature(5)])
    assert mock_store.analysis("d") is None


def test_writes_are_chunked(mock_store, feature, monkeypatch):
    import lm_saes.store.writer as writer

    monkeypatch.setattr(writer, "CHUNK_FEATURES", 4)
    calls = []
    real = type(mock_store.db[FEATURES]).insert_many
    monkeypatch.setattr(type(mock_store.db[FEATURES]), "insert_many",
                        lambda self, docs, **kw: calls.append(len(docs)) or real(self, docs, **kw))
    mock_store.upsert_dictionary("d")
    _analyze(mock_store, feature, n=10)
    assert calls == [4, 4, 4, 4, 2, 2]  # summaries and details, chunk by chunk


def test_features_sort_filter_page_and_search(mock_store, feature):
    mock_store.upsert_dictionary("d")
    _analyze(mock_store, feature, n=10, f2="a cat on the mat", f5="Cats purr", f7="dogs bark")
    listed = mock_store.features("d", sort="max_activation", descending=True, limit=3)
    assert [f["index"] for f in listed] == [9, 8, 7]
    assert all("top_contexts" not in f and "histogram" not in f for f in listed)
    assert [f["index"] for f in mock_store.features("d", skip=8)] == [8, 9]
    assert [f["index"] for f in mock_store.features("d", min_density=0.03, max_density=0.05)] == [3, 4, 5]
    assert mock_store.count_features("d", min_density=0.03) == 7
    assert [f["index"] for f in mock_store.features("d", search="cat")] == [2, 5]  # regex here: no $text
    assert mock_store.count_features("d", search="DOGS mat") == 2
    assert mock_store.features("d", analysis="nope") == [] and mock_store.count_features("d", analysis="nope") == 0
    with pytest.raises(ValueError, match="sort='n_fired'"):
        mock_store.features("d", sort="n_fired")
    with pytest.raises(ValueError, match="limit"):
        mock_store.features("d", limit=0)


def test_set_interpretation(mock_store, feature):
    mock_store.upsert_dictionary("d")
    _analyze(mock_store, feature)
    assert mock_store.set_interpretation("d", 1, "fires on cats")
    assert not mock_store.set_interpretation("d", 42, "nothing")
    assert mock_store.feature("d", 1)["interpretation"] == "fires on cats"


def test_delete_dictionary_removes_everything(mock_store, feature):
    mock_store.upsert_dictionary("d")
    _analyze(mock_store, feature)
    assert mock_store.delete_dictionary("d") and not mock_store.delete_dictionary("d")
    assert all(mock_store.db[c].count_documents({}) == 0 for c in (ANALYSES, FEATURES, DETAILS))


def test_schema_version_is_checked(mock_store):
    assert mock_store.db[META].find_one({"_id": "schema"})["version"] == SCHEMA_VERSION
    mock_store.db[META].update_one({"_id": "schema"}, {"$set": {"version": SCHEMA_VERSION + 1}})
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1}"):
        Store(mock_store.client, "test")


def test_the_public_surface_is_pinned():
    import lm_saes.store as store_module
    from lm_saes.store import AnalysisWriter

    assert sorted(store_module.__all__) == sorted([
        "MAX_FEATURE_BYTES", "SCHEMA_VERSION", "AnalysisWriter", "Store", "acquire_server", "open_store",
        "release_server", "server_state", "stop_server",
    ])
    public = lambda cls: sorted(n for n in vars(cls) if not n.startswith("_"))  # noqa: E731
    assert public(Store) == [
        "analyses", "analysis", "begin_analysis", "caches", "close", "connect", "count", "count_features",
        "delete_dictionary", "delete_run_features", "dictionaries", "dictionary", "errors", "feature",
        "features", "models", "name_holder", "public_run", "retire_runs", "set_interpretation", "sweep", "sweeps",
        "upsert_cache", "upsert_dictionary", "upsert_model", "upsert_sweep",
    ]
    assert public(AnalysisWriter) == ["abort", "complete", "status", "write_features"]
