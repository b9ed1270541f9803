"""The embedded nx-27017 server: start, share between processes, stop, and die mid-analysis."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lm_saes.config import StoreConfig
from lm_saes.errors import StoreError
from lm_saes.store import open_store, server_state, stop_server
from lm_saes.store.embedded import process_alive

CLIENT = Path(__file__).with_name("store_client.py")


@pytest.fixture()
def data_dir(tmp_path):
    """A data directory of its own; whatever server a test leaves there is stopped and checked."""
    path = tmp_path / "store"
    yield path
    state = server_state(path)
    stop_server(path)
    assert state is None, f"the test left a server running: {state}"


def _cfg(data_dir: Path, **kw) -> StoreConfig:
    return StoreConfig(data_dir=data_dir, database="shared", timeout_s=kw.pop("timeout_s", 5), start_timeout_s=60, **kw)


def _client(data_dir: Path, mode: str) -> tuple[subprocess.Popen, dict]:
    proc = subprocess.Popen([sys.executable, str(CLIENT), str(data_dir), mode],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line, f"store client ({mode}) failed: exit {proc.wait(120)}"
    return proc, json.loads(line)


def _finish(proc: subprocess.Popen) -> str:
    out, _ = proc.communicate("\n", timeout=120)
    assert proc.returncode == 0
    return out


def test_open_starts_the_server_and_close_stops_it(data_dir):
    with open_store(_cfg(data_dir)) as store:
        state = server_state(data_dir)
        assert state["port"] and process_alive(state["pid"])
        assert store.client.admin.command("ping")["ok"]
        assert (data_dir / "nx.pid").read_text().strip() == str(state["pid"])  # not /tmp/nx_27017.pid
    assert not process_alive(state["pid"])
    assert not (data_dir / "server.json").exists() and not (data_dir / "nx.pid").exists()
    assert (data_dir / "shared.db").exists()  # the data stays for next time


@pytest.mark.slow
def test_a_second_process_joins_and_the_starter_stops_it_last(data_dir):
    with open_store(_cfg(data_dir)) as store:
        server = server_state(data_dir)
        proc, child = _client(data_dir, "write")
        assert child["server_pid"] == server["pid"] and child["port"] == server["port"]
        assert "closed" in _finish(proc)
        assert process_alive(server["pid"]), "the child stopped a server the parent still uses"
        assert store.dictionary("from-child")["pid"] == child["pid"]
        assert [c["pid"] for c in server_state(data_dir)["clients"]] == [server["clients"][0]["pid"]]
    assert not process_alive(server["pid"])


@pytest.mark.slow
def test_the_server_outlives_its_starter_while_others_use_it(data_dir):
    store = open_store(_cfg(data_dir))
    server = server_state(data_dir)
    proc, child = _client(data_dir, "hold")
    assert child["server_pid"] == server["pid"]
    store.close()
    assert process_alive(server["pid"])
    with open_store(_cfg(data_dir)) as again:  # a newcomer joins the same server
        assert server_state(data_dir)["pid"] == server["pid"]
        again.upsert_dictionary("late")
    assert process_alive(server["pid"])
    _finish(proc)  # the last client out stops it
    assert not process_alive(server["pid"])
    assert server_state(data_dir) is None


@pytest.mark.slow
def test_a_server_whose_clients_died_is_adopted_and_stopped(data_dir):
    proc, child = _client(data_dir, "crash")
    proc.wait(60)
    assert process_alive(child["server_pid"])  # orphaned, still registered to a dead pid
    with open_store(_cfg(data_dir)) as store:
        state = server_state(data_dir)
        assert state["pid"] == child["server_pid"]
        assert [c["pid"] for c in state["clients"]] != [child["pid"]]  # the dead client is pruned
        store.upsert_dictionary("adopted")
    assert not process_alive(child["server_pid"])


def test_stop_server_stops_it_whoever_uses_it(data_dir):
    store = open_store(_cfg(data_dir))
    pid = server_state(data_dir)["pid"]
    assert stop_server(data_dir) and not process_alive(pid)
    assert not stop_server(data_dir)
    store.close()  # leaving a stopped server is fine


def test_a_taken_port_is_reported(data_dir, embedded_server):
    with pytest.raises(StoreError, match=f"port {embedded_server.port} .* is taken"):
        open_store(_cfg(data_dir, port=embedded_server.port))


def test_server_death_mid_analysis_then_retry(data_dir, feature):
    with open_store(_cfg(data_dir)) as store:
        store.upsert_dictionary("d")
        with store.begin_analysis("d", n_features=4) as w:
            w.write_features(feature(i) for i in range(4))
            first = w.complete()
    store = open_store(_cfg(data_dir, timeout_s=1))
    writer = store.begin_analysis("d", n_features=4)
    writer.write_features([feature(0, 2.0)])
    stop_server(data_dir)
    with pytest.raises(StoreError, match=r"did not answer while writing features.*has stopped; see .*server\.log"):
        with writer:
            writer.write_features([feature(i, 2.0) for i in range(1, 4)])
    store.close()
    with open_store(_cfg(data_dir)) as store:  # a fresh server on the same files
        assert store.analysis("d")["id"] == first["id"]
        assert store.feature("d", 0)["max_activation"] == 1.0
        assert {r["status"] for r in store.analyses("d")} == {"complete", "running"}  # the interrupted run
        with store.begin_analysis("d", n_features=4) as w:  # the retry removes the dead run
            w.write_features(feature(i, 2.0) for i in range(4))
            w.complete()
        assert [r["status"] for r in store.analyses("d")] == ["complete"]
        assert store.feature("d", 0)["max_activation"] == 2.0
