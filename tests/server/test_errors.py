"""Error answers: 4xx for whatever a client sends, 503 for a missing or dead store, and no body that
names a filesystem path, a port, or more than a few dozen characters of the client's input.
(tests/server/test_fuzz.py checks the same rules on generated requests to every route.)"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from lm_saes.config import StoreConfig
from lm_saes.server import create_app
from lm_saes.server.errors import MAX_SHOWN, NO_STORE
from lm_saes.store import open_store, stop_server
from tests.server.served import NAME


@pytest.mark.parametrize("url", [f"/api/dictionaries/{NAME}/features/{2**63}",
                                 f"/api/dictionaries/{NAME}/features?skip={2**63}",
                                 f"/api/dictionaries/{NAME}/features/{10**30}"])
def test_integers_past_64_bits_are_422(client, url):
    response = client.get(url)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["msg"] == f"Input should be less than or equal to {2**63 - 1}"


def test_the_largest_64_bit_index_and_skip_are_answered(client):
    assert client.get(f"/api/dictionaries/{NAME}/features/{2**63 - 1}").status_code == 404
    assert client.get(f"/api/dictionaries/{NAME}/features", params={"skip": 2**63 - 1}).json()["items"] == []


@pytest.mark.parametrize("kind", ["application/json", "text/plain"])
@pytest.mark.parametrize("body", [b'{"text": "\xff\xfe"}', b"\x80", b'{"text": "a\\ud800b"}', b'{"\\udfff": 1}'])
def test_bodies_that_are_not_utf8_or_hold_a_lone_surrogate_are_client_errors(client, body, kind):
    response = client.post(f"/api/dictionaries/{NAME}/infer", content=body, headers={"content-type": kind})
    assert 400 <= response.status_code < 500, response.text
    assert len(response.content) < 500


def test_a_long_name_is_not_echoed_back(client):
    name = "n" * 60_000  # a URL's limit is 64 kB
    response = client.get(f"/api/dictionaries/{name}")
    assert response.status_code == 404
    detail = response.json()["detail"]
    assert f"'{'n' * MAX_SHOWN}'... (60,000 characters)" in detail and len(response.content) < 500
    assert "stored: " in detail and NAME in detail


def test_a_large_body_is_not_echoed_back(client):
    for body in ({"text": "x" * 100_000}, {"k" * 100_000: 1, "text": "hi"}):
        response = client.post(f"/api/dictionaries/{NAME}/infer", json=body)
        assert response.status_code == 422 and len(response.content) < 1000
        error = response.json()["detail"][0]
        assert set(error) == {"type", "loc", "msg"} and error["loc"][0] == "body"  # no "input" echoed


def test_a_server_started_before_its_store_exists_answers_503_then_serves_it(tmp_path, monkeypatch):
    """`lm-saes serve` never creates the store it reads: until `lm-saes analyze` writes one, every
    API request is 503 and the data directory stays absent; then the next request serves it."""
    monkeypatch.delenv("MONGO_URI", raising=False)
    cfg = StoreConfig(data_dir=tmp_path / "work" / "store", timeout_s=2)
    with TestClient(create_app(cfg, device="cpu")) as client:
        response = client.get("/api/dictionaries")
        assert response.status_code == 503 and response.json() == {"detail": NO_STORE}
        assert not (tmp_path / "work").exists()
        with open_store(cfg) as writer:  # what `lm-saes analyze` does
            writer.upsert_dictionary("later", {"kind": "topk"})
        assert [d["name"] for d in client.get("/api/dictionaries").json()] == ["later"]
    stop_server(cfg.data_dir)
