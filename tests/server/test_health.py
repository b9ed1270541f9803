"""GET /api/health, and a database that dies under the server and comes back."""

from __future__ import annotations

import logging

from fastapi.testclient import TestClient

from lm_saes.server import create_app
from lm_saes.server.errors import STORE_DOWN
from lm_saes.store import server_state, stop_server


def test_health_is_ok(client):
    response = client.get("/api/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "store": "ok"}


def test_a_dead_database_answers_503_then_recovers(stored, caplog):
    with TestClient(create_app(stored.store, device="cpu")) as client:
        assert client.get("/api/health").status_code == 200
        port = server_state(stored.store.data_dir)["port"]
        assert stop_server(stored.store.data_dir)  # the embedded server dies under the app
        with caplog.at_level(logging.WARNING, logger="lm_saes.server.errors"):
            response = client.get("/api/health")
        assert response.status_code == 503
        assert response.json() == {"detail": STORE_DOWN}  # neither the store's files nor its port
        assert str(stored.store.data_dir) not in response.text and str(port) not in response.text
        assert "did not answer while answering a ping" in caplog.text  # the details go to the log
        assert f"127.0.0.1:{port}" in caplog.text and str(stored.store.data_dir) in caplog.text
        response = client.get("/api/health")  # the store is reopened: the server restarts
        assert response.status_code == 200, response.text
        assert server_state(stored.store.data_dir) is not None
        assert "tiny-sae" in [d["name"] for d in client.get("/api/dictionaries").json()]
