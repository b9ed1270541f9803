"""The embedded default server: nx-27017 (MongoDB wire protocol on SQLite) in a child process.

With no MongoDB configured, every lm-saes process that opens the store on the same data directory
shares one server. Files in the data directory::

    server.lock   flock held while a process starts, joins or leaves the server
    server.json   {"pid", "port", "host", "started_at", "clients": [{"pid", "start", "token"}]},
                  present while the server runs
    server.log    the server's output since it last started
    nx.pid        nx-27017's own pid file (its default, /tmp/nx_27017.pid, is one per machine:
                  a second server anywhere on the machine would refuse to start)
    <db>.db       SQLite files, one per database (:func:`database_file`)

Sharing and stopping, by reference counting:

- :func:`acquire_server`, under the lock: if ``server.json`` names a live nx-27017 process serving
  this directory, wait for it to answer a ping and register as a client; otherwise start one on
  the configured port (or a free one), wait for its ping and write ``server.json``.
- :func:`release_server`, under the lock: unregister; the last client to leave stops the server
  (SIGTERM, then SIGKILL after a grace period) and removes ``server.json``. The server runs in its
  own session, so a Ctrl-C in a terminal reaches the clients, which leave cleanly, and not the
  server that other processes may still use.
- A client that died without leaving (SIGKILL, crash) is pruned by pid (and process start time)
  at every acquire and release. A server left with no live client keeps running until the next
  process opens the store: that one adopts it and stops it when it leaves.
  :func:`stop_server` stops the server at once, whoever uses it.

One machine only: ``server.json`` names its host, and another host's server is refused (on a
shared filesystem, point ``mongo_uri`` at a real MongoDB instead). POSIX only (flock, signals).
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from pymongo import MongoClient
from pymongo.errors import PyMongoError

from lm_saes.errors import StoreError
from lm_saes.store.schema import now

_STATE, _LOCK, _LOG, _NX_PID = "server.json", "server.lock", "server.log", "nx.pid"
_LAUNCH = "import sys; from nx_27017.nx_27017 import main; sys.argv[0] = 'nx-27017'; sys.exit(main())"
_LISTENING = b"Listening on"  # what nx-27017 0.8.1 logs once its socket is bound
_PORT_ATTEMPTS = 3  # a free port can be taken between picking it and the server binding it
_CHILDREN: dict[int, tuple[int, subprocess.Popen]] = {}  # server pid -> (parent pid, handle)


@dataclass(frozen=True)
class ServerLease:
    """One client's registration with the shared embedded server."""

    data_dir: Path
    port: int
    pid: int  # the server's process id
    token: str  # this client's entry in server.json
    started: bool  # whether this client started the server

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/"


def database_file(data_dir: Path, database: str) -> Path:
    """The file nx-27017 keeps database ``database`` in: whether a store exists, without starting a server."""
    return Path(data_dir) / f"{database}.db"


def acquire_server(data_dir: Path, port: int | None = None, start_timeout_s: float = 30.0) -> ServerLease:
    """Join the server running on ``data_dir``, or start one; register this process as a client."""
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    with _locked(data_dir, start_timeout_s + 10):
        state = _read_state(data_dir)
        started = state is None or not _serving(state, data_dir, start_timeout_s)
        if started:
            state = _start(data_dir, port, start_timeout_s)
        me = {"pid": os.getpid(), "start": _process_start(os.getpid()), "token": token}
        state["clients"] = _live_clients(state) + [me]
        _write_state(data_dir, state)
    return ServerLease(data_dir, state["port"], state["pid"], token, started)


def release_server(lease: ServerLease, stop_timeout_s: float = 10.0) -> bool:
    """Unregister ``lease``; stop the server if no live client is left. True if it stopped it."""
    with _locked(lease.data_dir, stop_timeout_s + 10):
        state = _read_state(lease.data_dir)
        if state is None or state["pid"] != lease.pid:  # stopped (and maybe replaced) meanwhile
            process_alive(lease.pid)  # reaps it if it was our child
            return False
        clients = [c for c in _live_clients(state) if c["token"] != lease.token]
        if clients:
            state["clients"] = clients
            _write_state(lease.data_dir, state)
            return False
        _terminate(state["pid"], stop_timeout_s)
        (lease.data_dir / _STATE).unlink(missing_ok=True)
        return True


def stop_server(data_dir: Path, stop_timeout_s: float = 10.0) -> bool:
    """Stop the embedded server of ``data_dir`` now, whoever uses it. True if one was running."""
    data_dir = Path(data_dir).resolve()
    if not data_dir.is_dir():
        return False
    with _locked(data_dir, stop_timeout_s + 10):
        state = _read_state(data_dir)
        if state is None:
            return False
        running = process_alive(state["pid"]) and _is_server(state["pid"], data_dir)
        if running:
            _terminate(state["pid"], stop_timeout_s)
        (data_dir / _STATE).unlink(missing_ok=True)
        return running


def server_state(data_dir: Path) -> dict | None:
    """The contents of ``server.json`` if its server process is alive, else None."""
    data_dir = Path(data_dir).resolve()
    state = _read_state(data_dir) if data_dir.is_dir() else None
    if state is None or not (process_alive(state["pid"]) and _is_server(state["pid"], data_dir)):
        return None
    return state


# ---------------------------------------------------------------------------------------------
# Starting, finding and stopping the server process
# ---------------------------------------------------------------------------------------------


def _serving(state: dict, data_dir: Path, timeout_s: float) -> bool:
    """Whether ``state`` describes a live server of this directory (False: stale, start anew)."""
    host = socket.gethostname()
    if state.get("host") != host:
        raise StoreError(
            f"the embedded store server in {data_dir} belongs to host {state.get('host')!r}, not "
            f"{host!r}; use one data_dir per machine, or set mongo_uri to a MongoDB all machines reach"
        )
    if not (process_alive(state["pid"]) and _is_server(state["pid"], data_dir)):
        return False
    if _ping(state["port"], timeout_s):
        return True
    raise StoreError(
        f"the embedded store server (pid {state['pid']}, port {state['port']}) in {data_dir} does "
        f"not answer within {timeout_s:g} s; see {data_dir / _LOG}, stop it (kill {state['pid']}) "
        "and try again"
    )


def _start(data_dir: Path, port: int | None, timeout_s: float) -> dict:
    _clear_stale_pid_file(data_dir)
    if port is not None and not _port_free(port):
        raise StoreError(
            f"port {port} (StoreConfig.port) is taken by another process, so the embedded store server "
            "cannot start on it; choose another port or leave port unset to pick a free one"
        )
    log_path = data_dir / _LOG
    for _ in range(1 if port else _PORT_ATTEMPTS):
        chosen = port or _free_port()
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-c", _LAUNCH, "--data-dir", str(data_dir), "--host", "127.0.0.1",
                 "-p", str(chosen), "--pid-file", str(data_dir / _NX_PID), "--log-file", os.devnull],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=data_dir,
                start_new_session=True,
            )
        _CHILDREN[proc.pid] = (os.getpid(), proc)
        if _wait_ready(proc, chosen, log_path, timeout_s):
            return {"pid": proc.pid, "port": chosen, "host": socket.gethostname(), "started_at": now(), "clients": []}
        if proc.poll() is None:  # alive but silent: not a port clash, do not retry
            _terminate(proc.pid, 5.0)
            break
        process_alive(proc.pid)
    tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
    raise StoreError(
        f"the embedded MongoDB server (nx-27017) did not start in {data_dir} on port {chosen} within "
        f"{timeout_s:g} s: {' | '.join(tail) or 'no output'}; see {log_path} (is the port taken? set "
        "StoreConfig.port, or mongo_uri to use a running MongoDB)"
    )


def _wait_ready(proc: subprocess.Popen, port: int, log_path: Path, timeout_s: float) -> bool:
    """Wait until our process has bound the port (its log says so) and answers a ping there.

    The log line matters: a ping alone could be answered by another server on the same port.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if _LISTENING in log_path.read_bytes() and _ping(port, 0.25):
            return True
        time.sleep(0.05)
    return False


def _ping(port: int, timeout_s: float) -> bool:
    ms = max(int(timeout_s * 1000), 1)
    client: MongoClient = MongoClient(
        "127.0.0.1", port, serverSelectionTimeoutMS=ms, connectTimeoutMS=ms, socketTimeoutMS=ms
    )
    try:
        client.admin.command("ping")
        return True
    except PyMongoError:
        return False
    finally:
        client.close()


def _terminate(pid: int, timeout_s: float) -> None:
    for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait_s
        while process_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not process_alive(pid):
            break
    _CHILDREN.pop(pid, None)


def _clear_stale_pid_file(data_dir: Path) -> None:
    """Remove nx-27017's pid file unless it names a live server of this directory."""
    pid_file = data_dir / _NX_PID
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        pid_file.unlink(missing_ok=True)
        return
    if process_alive(pid) and _is_server(pid, data_dir):
        raise StoreError(
            f"an nx-27017 server (pid {pid}) not started by lm-saes runs on {data_dir}; stop it "
            f"(kill {pid}) or choose another data_dir"
        )
    pid_file.unlink(missing_ok=True)


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds: TIME_WAIT is fine
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------
# Processes, state file and lock
# ---------------------------------------------------------------------------------------------


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not; our own exited children are reaped here)."""
    if pid <= 0:
        return False
    owner, proc = _CHILDREN.get(pid, (None, None))
    if proc is not None and owner == os.getpid():
        if proc.poll() is None:
            return True
        del _CHILDREN[pid]
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = _proc_stat(pid)
    return stat is None or stat[0] != "Z"


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (state first), or None off Linux."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _process_start(pid: int) -> str | None:
    stat = _proc_stat(pid)
    return stat[19] if stat and len(stat) > 19 else None  # starttime, field 22 of /proc/PID/stat


def _is_server(pid: int, data_dir: Path) -> bool:
    """Whether ``pid`` is an nx-27017 serving ``data_dir`` (True where /proc cannot tell)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return True
    return any("nx_27017" in part for part in cmdline) and str(data_dir) in cmdline


def _live_clients(state: dict) -> list[dict]:
    return [
        c for c in state.get("clients", [])
        if process_alive(c["pid"]) and (c.get("start") is None or _process_start(c["pid"]) == c["start"])
    ]


def _read_state(data_dir: Path) -> dict | None:
    try:
        return json.loads((data_dir / _STATE).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None  # torn or garbled: treated as no server, a fresh one is started


def _write_state(data_dir: Path, state: dict) -> None:
    tmp = data_dir / f".{_STATE}.{os.getpid()}"
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    os.replace(tmp, data_dir / _STATE)


@contextmanager
def _locked(data_dir: Path, timeout_s: float) -> Iterator[None]:
    with open(data_dir / _LOCK, "a+") as fh:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise StoreError(
                        f"{data_dir / _LOCK} stayed locked for {timeout_s:g} s by another lm-saes "
                        "process starting or stopping the embedded store server; try again"
                    ) from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
