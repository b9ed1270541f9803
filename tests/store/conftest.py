"""Store fixtures: mongomock for logic, one embedded nx-27017 server per session for integration."""

from __future__ import annotations

import os
import uuid

import pytest

from lm_saes.config import StoreConfig
from lm_saes.store.embedded import ServerLease, acquire_server, process_alive, release_server, server_state


@pytest.fixture(autouse=True)
def _no_mongo_uri(monkeypatch):
    """A MONGO_URI in the developer's environment must not redirect the tests."""
    monkeypatch.delenv("MONGO_URI", raising=False)


@pytest.fixture()
def mock_store():
    """A Store on mongomock (no bulk_write is used, so mongomock 4.3 works with pymongo 4.20)."""
    mongomock = pytest.importorskip("mongomock")
    from lm_saes.store import Store

    store = Store(mongomock.MongoClient(), "test", location="mongomock")
    yield store
    store.close()


@pytest.fixture(scope="session")
def embedded_server(tmp_path_factory) -> ServerLease:
    """One nx-27017 server for the session's integration tests; stopped (pid gone) at the end."""
    lease = acquire_server(tmp_path_factory.mktemp("store"), start_timeout_s=60)
    assert lease.started
    yield lease
    assert release_server(lease), "the session server was still in use at the end of the tests"
    assert not process_alive(lease.pid), f"nx-27017 (pid {lease.pid}) survived its stop"
    assert server_state(lease.data_dir) is None


@pytest.fixture(params=["embedded", "mongo_uri"])
def store_cfg(request, embedded_server, tmp_path) -> StoreConfig:
    """A config reaching the session server with a database of its own: as the embedded default
    (joining it through data_dir), or as an external server given by ``mongo_uri`` (set
    LM_SAES_TEST_MONGO_URI to run these tests against a real MongoDB instead)."""
    database = f"t{uuid.uuid4().hex[:12]}"
    if request.param == "embedded":
        return StoreConfig(data_dir=embedded_server.data_dir, database=database, timeout_s=5)
    uri = os.environ.get("LM_SAES_TEST_MONGO_URI", embedded_server.uri)
    return StoreConfig(mongo_uri=uri, data_dir=tmp_path / "unused", database=database, timeout_s=5)


@pytest.fixture()
def feature():
    """``feature(index, scale=1.0, **extra)``: a small document shaped like lm_saes.analysis'."""
    return _feature


def _feature(index: int, scale: float = 1.0, **extra) -> dict:
    doc = {
        "index": index,
        "n_fired": index * 3,
        "density": index / 100,
        "max_activation": scale * (index + 1),
        "top_contexts": [{"context_id": 7, "peak": 2, "max": scale, "start": 0,
                          "tokens": [" the", " cat", " sat"], "acts": [0.0, 0.5, scale]}],
        "histogram": {"edges": [0.0, 1.0, 2.0], "counts": [3, 1]},
    }
    doc.update(extra)
    return doc


@pytest.fixture()
def large_feature():
    """``large_feature(top_k, window)``: a feature with ``top_k`` examples of 2 * window + 1 tokens."""
    return _large_feature


def _large_feature(top_k: int, window: int) -> dict:
    """A feature as lm_saes.analysis writes it, with ``top_k`` examples of 2 * window + 1 tokens."""
    n = 2 * window + 1

    def example(i: int) -> dict:
        return {"context_id": i, "peak": window, "max": 1.0, "start": 0,
                "tokens": [f" tok{j % 997}" for j in range(n)], "acts": [0.001 * j for j in range(n)]}

    return {
        "index": 123, "n_fired": 10**6, "n_contexts": 10**5, "density": 0.01, "max_activation": 12.5,
        "mean_activation": 1.5, "decoder_norm": 1.0,
        "top_contexts": [example(i) for i in range(top_k)],
        "quantiles": [{"band": b, "low": b / 10, "high": (b + 1) / 10, "n_contexts": 9,
                       "examples": [example(i) for i in range(5)]} for b in range(10)],
        "histogram": {"edges": [i / 64 for i in range(65)], "counts": [1] * 64},
        "logits": {"positive": [{"token": "x", "token_id": 1, "value": 1.0}] * 10, "negative": []},
        "neighbors": [{"index": i, "cosine": 0.5} for i in range(10)],
    }
