"""Explanations beside their features, on the real wire-protocol server: one record per feature and
explainer, the shown summary sortable and searchable, resuming by run, an old store's text index
replaced, and deleting a dictionary deletes its explanations."""

from __future__ import annotations

from pymongo import TEXT, MongoClient

from lm_saes.config import StoreConfig
from lm_saes.store import open_store
from lm_saes.store.explanations import (
    explained, feature_explanations, interpretations, sync_summaries, upsert_interpretation, write_explanations,
)
from lm_saes.store.schema import EXPLANATIONS, FEATURES, META


def record(index: int, explainer: str, detection: float | None, text: str = "", status: str = "scored") -> dict:
    scores = {"simulation": detection / 2} if detection is None else {"simulation": detection / 2, "detection": detection}
    return {"index": index, "explainer": explainer, "kind": "lexical", "status": status,
            "explanation": text or f'"tok{index}" 1.000', "scores": scores, "failures": [], "requests": []}


def analyzed(store, feature, n=6) -> str:
    store.upsert_dictionary("d", {"d_sae": n})
    with store.begin_analysis("d", n_features=n) as w:
        w.write_features(feature(i) for i in range(n))
        return w.complete()["id"]


def test_records_are_shown_sorted_and_searched_on_their_features(store_cfg, feature):
    with open_store(store_cfg) as store:
        run = analyzed(store, feature)
        write_explanations(store, "d", "default", run, [record(0, "lexical", 0.6), record(2, "lexical", 0.9),
                                                         record(3, "lexical", 0.7, text='"crown" 1.000')])
        assert explained(store, "d", "default", "lexical", run) == {0, 2, 3}
        assert explained(store, "d", "default", "lexical", "an-older-run") == set()  # stale records are redone
        ranked = store.features("d", sort="detection", descending=True)
        assert [f["index"] for f in ranked] == [2, 3, 0] and store.count_features("d", scored="detection") == 3
        assert [f["index"] for f in store.features("d", sort="detection")] == [0, 3, 2]
        assert ranked[0]["explanation"] == {"text": '"tok2" 1.000', "explainer": "lexical", "kind": "lexical",
                                            "status": "scored", "scores": {"simulation": 0.45, "detection": 0.9}}
        assert [f["index"] for f in store.features("d", search="crown")] == [3]
        assert store.count_features("d", search="crown") == 1

        # a second explainer coexists; the feature shows the last one written
        write_explanations(store, "d", "default", run, [record(2, "openai:m", 0.1)])
        assert [r["explainer"] for r in feature_explanations(store, "d", 2)] == ["openai:m", "lexical"]
        assert store.feature("d", 2)["explanation"]["explainer"] == "openai:m"
        # the same explainer again replaces its record
        write_explanations(store, "d", "default", run, [record(2, "openai:m", 0.3, status="failed")])
        assert len(feature_explanations(store, "d", 2)) == 2
        assert explained(store, "d", "default", "openai:m", run, failed_too=False) == set()  # failed: retried on request
        assert explained(store, "d", "default", "openai:m", run) == {2}


def test_a_summary_lost_in_a_crash_is_written_again(store_cfg, feature):
    with open_store(store_cfg) as store:
        run = analyzed(store, feature)
        write_explanations(store, "d", "default", run, [record(1, "lexical", 0.8), record(4, "lexical", 0.5)])
        store.db[FEATURES].update_one({"analysis_id": run, "index": 4}, {"$unset": {"explanation": ""}})
        assert sync_summaries(store, "d", "default", "lexical", run) == 1
        assert store.feature("d", 4)["explanation"]["scores"]["detection"] == 0.5
        assert sync_summaries(store, "d", "default", "lexical", run) == 0


def test_summaries_are_kept_per_explainer_and_deleted_with_the_dictionary(store_cfg, feature):
    with open_store(store_cfg) as store:
        run = analyzed(store, feature)
        write_explanations(store, "d", "default", run, [record(1, "lexical", 0.8)])
        for explainer in ("lexical", "openai:m"):
            upsert_interpretation(store, {"dictionary": "d", "analysis": "default", "explainer": explainer,
                                          "means": {"detection": {"n": 1, "mean": 0.8, "low": 0.8, "high": 0.8}}})
        upsert_interpretation(store, {"dictionary": "d", "analysis": "default", "explainer": "lexical", "means": {}})
        assert [s["explainer"] for s in interpretations(store, "d")] == ["lexical", "openai:m"]  # newest first
        assert interpretations(store, "d")[0]["means"] == {}
        assert store.delete_dictionary("d")
        assert interpretations(store, "d") == [] and store.db[EXPLANATIONS].count_documents({"dictionary": "d"}) == 0


def test_an_older_stores_text_index_gives_way_or_search_reads_both_fields(embedded_server, feature, tmp_path):
    cfg = StoreConfig(data_dir=embedded_server.data_dir, database="old_text_index", timeout_s=5)
    client = MongoClient(embedded_server.uri)
    try:  # what an lm-saes before explanations left: a text index on interpretation alone, with documents
        client[cfg.database][META].insert_one({"_id": "schema", "version": 2})
        client[cfg.database][FEATURES].create_index([("interpretation", TEXT)])
        client[cfg.database][FEATURES].insert_one({"analysis_id": "x", "index": 0, "interpretation": "kings"})
    finally:
        client.close()
    with open_store(cfg) as store:
        run = analyzed(store, feature)
        store.set_interpretation("d", 1, "mentions of kings")
        write_explanations(store, "d", "default", run, [record(2, "lexical", 0.5, text='"kings" 0.4')])
        assert [f["index"] for f in store.features("d", search="kings")] == [1, 2]
        assert store.count_features("d", search="kings") == 2
