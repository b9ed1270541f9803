"""The store against a real wire-protocol server (the session's embedded nx-27017): real indexes,
real duplicate-key errors, idempotent runs, search, large features, and a dead database."""

from __future__ import annotations

import socket
import time

import pytest
from pymongo.errors import BulkWriteError, DuplicateKeyError

from lm_saes.config import StoreConfig
from lm_saes.errors import NoStoreError, StoreError
from lm_saes.store import MAX_FEATURE_BYTES, open_store
from lm_saes.store.embedded import database_file
from lm_saes.store.schema import ANALYSES, DETAILS, DICTIONARIES, FEATURES


@pytest.fixture()
def store(store_cfg):
    with open_store(store_cfg) as store:
        store.upsert_dictionary("d", {"d_sae": 6})
        yield store


def _run(store, feature, scale, n=6, **extra):
    with store.begin_analysis("d", n_features=n) as w:
        w.write_features(feature(i, scale, **extra) for i in range(n))
        return w.complete({"scale": scale})


def test_indexes_exist_on_the_server(store):
    keys = {tuple(k for k, _ in ix["key"].items()): ix.get("unique", False) for ix in store.db[FEATURES].list_indexes()}
    assert keys[("analysis_id", "index")] is True
    assert ("analysis_id", "density") in keys and ("analysis_id", "max_activation") in keys
    names = {tuple(ix["key"]): ix.get("unique", False) for ix in store.db[DICTIONARIES].list_indexes()}
    assert names[("name",)] is True


def test_unique_indexes_raise_real_duplicate_key_errors(store, feature):
    with pytest.raises(DuplicateKeyError):
        store.db[DICTIONARIES].insert_one({"name": "d"})
    with pytest.raises(StoreError, match="feature index 3 was written twice") as info:
        with store.begin_analysis("d") as w:
            w.write_features([feature(3)])
            w.write_features([feature(3)])
    assert isinstance(info.value.__cause__, BulkWriteError)
    assert info.value.__cause__.details["writeErrors"][0]["code"] == 11000


def test_rerunning_leaves_exactly_one_complete_copy(store, feature):
    _run(store, feature, 1.0)
    second = _run(store, feature, 2.0)
    assert [(r["id"], r["status"]) for r in store.analyses("d")] == [(second["id"], "complete")]
    assert store.db[ANALYSES].count_documents({}) == 1
    assert store.count(FEATURES, {}) == 6 and store.count(DETAILS, {}) == 6
    assert [f["max_activation"] for f in store.features("d", sort="max_activation")] == [2.0, 4.0, 6.0, 8.0, 10.0, 12.0]


def test_an_interrupted_run_never_shows(store, feature):
    first = _run(store, feature, 1.0)
    with pytest.raises(RuntimeError):
        with store.begin_analysis("d", n_features=6) as w:
            w.write_features(feature(i, 5.0) for i in range(4))
            raise RuntimeError("killed")
    assert store.analysis("d")["id"] == first["id"]
    assert {f["max_activation"] for f in store.features("d")} == {1.0, 2.0, 3.0, 4.0, 5.0, 6.0}
    assert store.feature("d", 0)["top_contexts"][0]["max"] == 1.0
    assert sorted(r["status"] for r in store.analyses("d")) == ["complete", "failed"]


def test_text_search_and_density_filters(store, feature):
    with store.begin_analysis("d", n_features=6) as w:
        w.write_features(feature(i, interpretation=text) for i, text in
                         enumerate(["cats", "dogs and cats", "the weather", "dog food", "nothing", "CATS again"]))
        w.complete()
    assert store.text_search  # nx-27017 accepts the text index and answers $text
    assert [f["index"] for f in store.features("d", search="cats")] == [0, 1, 5]
    assert store.count_features("d", search="weather") == 1
    assert [f["index"] for f in store.features("d", min_density=0.02, sort="density", descending=True)] == [5, 4, 3, 2]
    assert store.count_features("d", max_density=0.01) == 2


def test_scalars_keep_their_types_and_status_is_a_string(store, feature):
    # nx-27017 turns a top-level $set of True into 1; features are inserted, never $set
    _run(store, feature, 1.0, dead=False, flagged=True)
    f = store.feature("d", 2)
    assert f["flagged"] is True and f["dead"] is False and isinstance(f["n_fired"], int)
    assert store.analysis("d")["status"] == "complete"
    store.upsert_dictionary("d", {"tied": True, "hook": "h"})  # replaced, not $set
    store.upsert_dictionary("d", {"tied": True, "hook": "h2"})
    assert store.dictionary("d")["tied"] is True


def test_a_large_k_feature_round_trips(store, large_feature):
    doc = large_feature(top_k=1000, window=64)
    doc["index"] = 0
    with store.begin_analysis("d", n_features=1) as w:
        w.write_features([doc])
        w.complete()
    back = store.feature("d", 0)
    assert len(back["top_contexts"]) == 1000 and back["top_contexts"][999]["tokens"] == doc["top_contexts"][999]["tokens"]
    assert MAX_FEATURE_BYTES < 16 * 2**20


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("via", ["config", "env"])
def test_a_dead_database_is_reported_quickly(via, monkeypatch, tmp_path):
    uri = f"mongodb://user:secret@127.0.0.1:{_closed_port()}/"
    cfg = StoreConfig(timeout_s=0.5, data_dir=tmp_path / "unused", mongo_uri=uri if via == "config" else None)
    if via == "env":
        monkeypatch.setenv("MONGO_URI", uri)
    start = time.monotonic()
    with pytest.raises(StoreError) as info:
        open_store(cfg)
    assert time.monotonic() - start < 5
    message = str(info.value)
    assert uri.replace("secret", "***") in message and "secret" not in message
    assert "docker compose up -d mongo" in message and "unset both to use the embedded server" in message
    assert not (tmp_path / "unused").exists()  # no embedded server was started instead


def test_a_bad_mongo_uri_is_refused():
    with pytest.raises(ValueError, match="mongodb://"):
        StoreConfig(mongo_uri="localhost:27017")


def test_the_nx_quirks_the_schema_rules_avoid_are_real(store):
    """nx-27017 0.8.1 (pinned): if one of these starts failing, the matching rule in
    lm_saes/store/schema.py may be relaxed, not the other way round."""
    scratch = store.db["scratch"]
    scratch.insert_many([{"_id": 1, "x": None}, {"_id": 2}])
    scratch.update_one({"_id": 2}, {"$set": {"flag": True, "nested": {"flag": True}}})
    doc = scratch.find_one({"_id": 2})
    assert doc["flag"] == 1 and doc["flag"] is not True  # top-level $set of True stores 1
    assert doc["nested"]["flag"] is True
    # null and missing are confused, and the answer depends on the query path
    assert [d["_id"] for d in scratch.find({"x": {"$exists": False}})] == [1, 2]  # MongoDB: [2]
    assert scratch.count_documents({"x": None}) != len(list(scratch.find({"x": None})))
    assert store.client.server_info().get("version") is None


def test_a_reader_never_creates_a_store(store_cfg, tmp_path):
    """open_store(create=False), as `lm-saes show` and `lm-saes serve` open it: a database that
    holds no store, or an embedded data directory that does not exist, is an error naming where
    it looked and how to point at a store; nothing is created there."""
    with pytest.raises(NoStoreError, match=f"no analysis store.*'{store_cfg.database}'|'{store_cfg.database}'.* no analysis store"):
        open_store(store_cfg, create=False)
    assert not database_file(store_cfg.data_dir, store_cfg.database).exists()
    with open_store(store_cfg) as writer:  # a writer creates it
        writer.upsert_dictionary("d", {"d_sae": 6})
    with open_store(store_cfg, create=False) as reader:
        assert [d["name"] for d in reader.dictionaries()] == ["d"]

    elsewhere = StoreConfig(data_dir=tmp_path / "work" / "store", database=store_cfg.database)
    with pytest.raises(NoStoreError) as info:
        open_store(elsewhere, create=False)
    message = str(info.value)
    assert f"no analysis store in {tmp_path / 'work' / 'store'}" in message
    assert "--set data_dir=PATH" in message and "MONGO_URI" in message
    assert not (tmp_path / "work").exists()


def test_a_name_held_by_another_artifact_is_refused_unless_replaced(store, feature):
    from lm_saes.artifacts import directory_identity
    from lm_saes.store.store import NameTakenError

    a, b = directory_identity("/runs/a/topk"), directory_identity("/runs/other/topk")
    store.upsert_dictionary("topk", {"path": "/runs/a/topk", "d_sae": 6}, identity=a)
    _run_of(store, "topk", feature)
    store.upsert_dictionary("topk", {"path": "/runs/a/topk", "d_sae": 6}, identity=a)  # the same artifact again
    with pytest.raises(NameTakenError, match="from /runs/a/topk") as taken:
        store.upsert_dictionary("topk", {"path": "/runs/other/topk", "d_sae": 4}, identity=b)
    assert taken.value.holder["path"] == "/runs/a/topk"
    assert store.dictionary("topk")["d_sae"] == 6 and store.analysis("topk") is not None
    assert store.name_holder(DICTIONARIES, "topk", b)["path"] == "/runs/a/topk"
    assert store.name_holder(DICTIONARIES, "topk", a) is None
    store.upsert_dictionary("topk", {"path": "/runs/other/topk", "d_sae": 4}, identity=b, replace=True)
    assert store.dictionary("topk")["d_sae"] == 4 and store.analysis("topk") is None  # the old analyses went too
    store.upsert_sweep("s", {"output_dir": "/runs/s1", "status": "complete"}, identity=directory_identity("/runs/s1"))
    with pytest.raises(NameTakenError):
        store.upsert_sweep("s", {"output_dir": "/runs/s2", "status": "running"}, identity=directory_identity("/runs/s2"))
    assert store.sweep("s")["status"] == "complete"


def test_a_record_written_before_identities_is_identified_by_its_directory(store):
    from lm_saes.artifacts import directory_identity
    from lm_saes.store.store import NameTakenError

    store.upsert_dictionary("old", {"path": "/runs/a/old"})  # no identity: an older lm-saes wrote it
    store.upsert_dictionary("old", {"path": "/runs/a/old", "v": 2}, identity=directory_identity("/runs/a/old"))
    assert store.dictionary("old")["v"] == 2
    with pytest.raises(NameTakenError):
        store.upsert_dictionary("old", {"path": "/runs/b/old"}, identity=directory_identity("/runs/b/old"))


def _run_of(store, name, feature, n=6):
    with store.begin_analysis(name, n_features=n) as w:
        w.write_features(feature(i, 1.0) for i in range(n))
        w.complete({})
