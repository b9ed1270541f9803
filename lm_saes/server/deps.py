"""What handlers receive by injection: the store (reopened after a failure) and the inference engine."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from lm_saes.config import StoreConfig
from lm_saes.server.errors import shown
from lm_saes.server.inference import InferenceEngine
from lm_saes.store import Store, open_store

log = logging.getLogger(__name__)


class StoreHolder:
    """One open store for the app's lifetime; after a database failure it is reopened on the next
    request (which restarts the embedded server if it stopped, or reconnects to MongoDB). The
    server only reads: a store that does not exist yet is never created (NoStoreError, 503) and is
    opened once `lm-saes analyze` has written it."""

    def __init__(self, cfg: StoreConfig) -> None:
        self.cfg = cfg
        self._store: Store | None = None
        self._stale = False
        self._lock = threading.Lock()

    def get(self) -> Store:
        """The open store, opening (or reopening) it if needed; raises StoreError if that fails."""
        with self._lock:
            if self._store is None or self._store.closed or self._stale:
                old, self._store = self._store, open_store(self.cfg, create=False)  # open first: a shared server stays up
                self._stale = False
                if old is not None:
                    _close_quietly(old)
            return self._store

    def failed(self) -> None:
        """A request met a database failure: reopen the store on the next request."""
        with self._lock:
            self._stale = True

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                _close_quietly(self._store)
            self._store = None


def _close_quietly(store: Store) -> None:
    try:
        store.close()
    except Exception as e:  # noqa: BLE001 - closing a broken store must not fail the request
        log.warning("closing the store failed: %s", e)


def get_store(request: Request) -> Store:
    return request.app.state.stores.get()


def get_engine(request: Request) -> InferenceEngine:
    return request.app.state.engine


StoreDep = Annotated[Store, Depends(get_store)]
EngineDep = Annotated[InferenceEngine, Depends(get_engine)]


def require_dictionary(store: Store, name: str) -> dict:
    """The dictionary record, or 404 naming the stored dictionaries."""
    return require_record(store.dictionary(name), "dictionary", name, store.dictionaries, "lm-saes analyze")


def require_sweep(store: Store, name: str) -> dict:
    """The sweep record, or 404 naming the stored sweeps."""
    return require_record(store.sweep(name), "sweep", name, store.sweeps, "lm-saes sweep")


def require_record(record: dict | None, what: str, name: str, listing: Callable[[], list[dict]], command: str) -> dict:
    """``record``, or a 404 that names what is stored (``listing``) and the command that stores one."""
    if record is None:
        known = names_of([r["name"] for r in listing()]) or f"none (run {command})"
        raise HTTPException(404, f"no {what} {shown(name)} in the store; stored: {known}")
    return record


def require_analysis(store: Store, dictionary: str, analysis: str) -> dict:
    """The complete analysis run shown for (dictionary, analysis), or 404."""
    run = store.analysis(dictionary, analysis)
    if run is None:
        names = [d["analyses"] for d in store.dictionaries() if d["name"] == dictionary]
        known = names_of(names[0]) if names and names[0] else "none (run lm-saes analyze)"
        raise HTTPException(404, f"dictionary {shown(dictionary)} has no analysis {shown(analysis)}; "
                                 f"complete analyses: {known}")
    return run


def names_of(names: list[str], limit: int = 20) -> str:
    """The first ``limit`` stored names, comma-separated, with how many more there are."""
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


__all__ = ["EngineDep", "StoreDep", "StoreHolder", "get_engine", "get_store", "require_analysis", "require_dictionary", "require_sweep"]
