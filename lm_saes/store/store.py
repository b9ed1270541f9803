"""The analysis store over one pymongo client: registry, analysis runs and feature queries."""

from __future__ import annotations

import atexit
import os
import re
import socket
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import bson
from bson import ObjectId
from bson.son import SON
from pymongo import ASCENDING, DESCENDING, MongoClient
from pymongo.errors import ConnectionFailure, DuplicateKeyError, OperationFailure, PyMongoError

from lm_saes.artifacts import directory_identity
from lm_saes.config import StoreConfig
from lm_saes.errors import NoStoreError, StoreError
from lm_saes.store.documents import MAX_FEATURE_BYTES, loaded_details, plain
from lm_saes.store.embedded import acquire_server, database_file, process_alive, release_server
from lm_saes.store.schema import (
    ANALYSES, CACHES, COMPLETE, DETAILS, DICTIONARIES, EXPLANATIONS, FAILED, FEATURES, INTERPRETATIONS, MODELS,
    RUNNING, SCORE_FIELDS, SORT_KEYS, SWEEPS, TEXT_FIELDS, ensure_schema, has_schema, now,
)
from lm_saes.store.writer import ACTIVE_RUNS, AnalysisWriter

MAX_PAGE = 10_000
_SUMMARY = {"_id": 0, "peak_tokens": 0}  # what feature lists return: the scalars
_POINT_AT_A_STORE = (
    "To read another store, run from the directory you analyzed in, or point at it: data_dir "
    "(`lm-saes show NAME --set data_dir=PATH`, `lm-saes serve --set store.data_dir=PATH`) or MONGO_URI."
)
_REMOTE_FIX = (
    "Start MongoDB there (e.g. `docker compose up -d mongo` in the lm-saes repository), correct "
    "mongo_uri / MONGO_URI, or unset both to use the embedded server."
)


def open_store(cfg: StoreConfig | None = None, *, create: bool = True) -> Store:
    """Connect to ``cfg.mongo_uri`` (else env MONGO_URI, else the embedded server, started on demand).

    ``create=False`` is for readers (``lm-saes show``, ``lm-saes serve``): a store that does not
    exist yet (no embedded database file in ``data_dir``, or a database without the store's schema
    record) raises :class:`NoStoreError` instead of being created empty.
    """
    cfg = cfg or StoreConfig()
    uri = cfg.mongo_uri or os.environ.get("MONGO_URI") or None
    if uri is not None:
        if not uri.startswith(("mongodb://", "mongodb+srv://")):
            raise StoreError(f"MONGO_URI={_redact(uri)!r} must start with mongodb:// or mongodb+srv://")
        return Store.connect(uri, cfg.database, cfg.timeout_s, fix=_REMOTE_FIX, create=create)
    if not create and not database_file(cfg.data_dir, cfg.database).is_file():
        raise NoStoreError(
            f"no analysis store in {Path(cfg.data_dir).resolve()} (it holds no database {cfg.database!r}); "
            f"`lm-saes analyze` writes one there. {_POINT_AT_A_STORE}"
        )
    lease = acquire_server(cfg.data_dir, cfg.port, cfg.start_timeout_s)
    fix = (
        f"The embedded server (data in {lease.data_dir}) has stopped; see {lease.data_dir / 'server.log'} "
        "and open the store again to restart it."
    )
    try:
        return Store.connect(
            lease.uri, cfg.database, cfg.timeout_s, fix=fix, on_close=lambda: release_server(lease),
            location=f"{lease.uri} (embedded nx-27017, data in {lease.data_dir})", create=create,
        )
    except BaseException:
        release_server(lease)
        raise


class Store:
    """Dictionaries, analyses and features in one MongoDB database (see lm_saes.store)."""

    def __init__(
        self, client: MongoClient, database: str = "lm_saes", *, location: str = "MongoDB",
        fix: str = "", on_close: Callable[[], Any] | None = None, create: bool = True,
    ) -> None:
        self.client = client
        self.db = client[database]
        self.location = location
        self.fix = fix
        self._on_close = on_close
        self.closed = False
        with self.errors(f"opening database {database!r}"):
            if not create and not has_schema(self.db):
                raise NoStoreError(f"database {database!r} at {location} holds no analysis store; "
                                   f"`lm-saes analyze` writes one there. {_POINT_AT_A_STORE}")
            self.text_search = ensure_schema(self.db)
        atexit.register(self.close)

    @classmethod
    def connect(
        cls, uri: str, database: str, timeout_s: float, *, fix: str, location: str | None = None,
        on_close: Callable[[], Any] | None = None, create: bool = True,
    ) -> Store:
        ms = max(int(timeout_s * 1000), 1)
        try:
            client: MongoClient = MongoClient(
                uri, serverSelectionTimeoutMS=ms, connectTimeoutMS=ms, appname="lm-saes"
            )
        except PyMongoError as e:
            raise StoreError(f"mongo_uri {_redact(uri)!r} is not a usable MongoDB URI: {e}") from e
        try:
            return cls(client, database, location=location or _redact(uri), fix=fix, on_close=on_close, create=create)
        except BaseException:
            client.close()
            raise

    def close(self) -> None:
        """Close the connection and leave the embedded server (stopped if no one else uses it)."""
        if self.closed:
            return
        self.closed = True
        atexit.unregister(self.close)
        self.client.close()
        if self._on_close is not None:
            self._on_close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def errors(self, what: str) -> Iterator[None]:
        """Turn pymongo's errors into StoreError naming the server, the operation and the fix."""
        try:
            yield
        except ConnectionFailure as e:
            detail = str(e).splitlines()[0][:200] if str(e) else ""
            raise StoreError(
                f"MongoDB at {self.location} did not answer while {what} ({type(e).__name__}: "
                f"{detail}). {self.fix}"
            ) from e
        except PyMongoError as e:
            raise StoreError(f"MongoDB at {self.location} refused {what}: {e}") from e

    # -----------------------------------------------------------------------------------------
    # Registry: models, caches, dictionaries
    # -----------------------------------------------------------------------------------------

    def upsert_model(self, name: str, doc: Mapping[str, Any] | None = None) -> None:
        self._upsert(MODELS, name, doc)

    def upsert_cache(self, name: str, doc: Mapping[str, Any] | None = None) -> None:
        self._upsert(CACHES, name, doc)

    def upsert_dictionary(self, name: str, doc: Mapping[str, Any] | None = None, *, identity: str | None = None,
                          replace: bool = False) -> None:
        """Create or replace dictionary ``name`` (its analyses are kept). With ``identity`` (the
        artifact's, ``artifacts.directory_identity``), a name held by another identity raises
        NameTakenError unless ``replace``, which deletes the other dictionary and its analyses."""
        if replace and identity is not None and self._holder(DICTIONARIES, name, identity) is not None:
            self.delete_dictionary(name)
        self._upsert(DICTIONARIES, name, doc, identity)

    def upsert_sweep(self, name: str, doc: Mapping[str, Any], *, identity: str | None = None,
                     replace: bool = False) -> None:
        """Create or replace the record of sweep ``name`` (its members' table); ``identity`` and
        ``replace`` as for ``upsert_dictionary``."""
        self._upsert(SWEEPS, name, doc, None if replace else identity, identity)

    def name_holder(self, collection: str, name: str, identity: str) -> dict | None:
        """The record holding ``name`` in ``collection`` if it belongs to another identity, else None."""
        return self._holder(collection, name, identity)

    def sweeps(self) -> list[dict]:
        """Every sweep record, by name, without its rows."""
        with self.errors("listing sweeps"):
            return list(self.db[SWEEPS].find({}, {"_id": 0, "rows": 0}).sort("name", ASCENDING))

    def sweep(self, name: str) -> dict | None:
        with self.errors(f"reading sweep {name!r}"):
            return self.db[SWEEPS].find_one({"name": name}, {"_id": 0})

    def models(self) -> list[dict]:
        return self._list(MODELS)

    def caches(self) -> list[dict]:
        return self._list(CACHES)

    def dictionaries(self) -> list[dict]:
        """Every dictionary, by name, with ``analyses``: the names of its complete analyses."""
        docs = self._list(DICTIONARIES)
        with self.errors("listing analyses"):
            runs = list(self.db[ANALYSES].find({"status": COMPLETE}, {"dictionary": 1, "name": 1}))
        for doc in docs:
            doc["analyses"] = sorted({r["name"] for r in runs if r["dictionary"] == doc["name"]})
        return docs

    def dictionary(self, name: str) -> dict | None:
        with self.errors(f"reading dictionary {name!r}"):
            return self.db[DICTIONARIES].find_one({"name": name}, {"_id": 0})

    def delete_dictionary(self, name: str) -> bool:
        """Delete a dictionary with all its analyses, features and explanations; False if there was none."""
        with self.errors(f"deleting dictionary {name!r}"):
            for run in self.db[ANALYSES].find({"dictionary": name}, {"_id": 1}):
                self._delete_run(run["_id"])
            for collection in (EXPLANATIONS, INTERPRETATIONS):
                self.db[collection].delete_many({"dictionary": name})
            return self.db[DICTIONARIES].delete_one({"name": name}).deleted_count == 1

    def _upsert(self, collection: str, name: str, doc: Mapping[str, Any] | None, identity: str | None = None,
                stored_identity: str | None = None) -> None:
        """Replace the record ``name``; with ``identity``, only one of that identity (the unique
        name index makes the check and the write one atomic step). ``stored_identity`` (default:
        ``identity``) is what the record keeps."""
        _check_name(name, collection)
        body = plain(dict(doc or {}), f"{collection} {name!r}")
        if "_id" in body or body.get("name", name) != name:
            raise StoreError(f"{collection} {name!r}: leave '_id' out and 'name' equal to {name!r}")
        body.update(name=name, updated_at=now())
        if stored_identity or identity:
            body["identity"] = stored_identity or identity
        if len(bson.encode(body)) > MAX_FEATURE_BYTES:
            raise StoreError(f"{collection} {name!r} is over {MAX_FEATURE_BYTES / 2**20:.0f} MiB encoded")
        with self.errors(f"writing {collection} {name!r}"):
            key = {"name": name} if identity is None else {"name": name, "identity": identity}
            try:
                self.db[collection].replace_one(key, body, upsert=True)
            except DuplicateKeyError:  # the name is held: by this identity in an older record, or by another
                holder = self._holder(collection, name, identity) if identity is not None else None
                if holder is not None:
                    raise NameTakenError(collection, name, holder) from None
                self.db[collection].replace_one({"name": name}, body, upsert=True)

    def _holder(self, collection: str, name: str, identity: str) -> dict | None:
        """The record named ``name`` when its identity is not ``identity``. A record written before
        identities were stored is identified by its directory (``path`` or ``output_dir``)."""
        with self.errors(f"reading {collection} {name!r}"):
            held = self.db[collection].find_one({"name": name}, {"_id": 0, "rows": 0})
        if held is None:
            return None
        directory = held.get("path") or held.get("output_dir")
        stored = held.get("identity") or (directory_identity(directory) if directory else None)
        return None if stored == identity else held

    def _list(self, collection: str) -> list[dict]:
        with self.errors(f"listing {collection}"):
            return list(self.db[collection].find({}, {"_id": 0}).sort("name", ASCENDING))

    # -----------------------------------------------------------------------------------------
    # Analyses
    # -----------------------------------------------------------------------------------------

    def begin_analysis(
        self, dictionary: str, name: str = "default", meta: Mapping[str, Any] | None = None,
        n_features: int | None = None,
    ) -> AnalysisWriter:
        """Start a run of analysis ``name``; ``n_features`` (if given) is checked at complete()."""
        _check_name(name, "analysis")
        if n_features is not None and n_features < 0:
            raise ValueError(f"n_features must be >= 0, got {n_features}")
        run = {
            "_id": str(ObjectId()), "dictionary": dictionary, "name": name, "status": RUNNING,
            "created_at": now(), "host": socket.gethostname(), "pid": os.getpid(),
            "meta": plain(dict(meta or {}), "analysis meta"), "n_written": 0,
        }
        if n_features is not None:
            run["n_features"] = n_features
        with self.errors(f"starting analysis {name!r} of dictionary {dictionary!r}"):
            if self.db[DICTIONARIES].find_one({"name": dictionary}, {"_id": 1}) is None:
                raise StoreError(
                    f"dictionary {dictionary!r} is not in the store; call upsert_dictionary({dictionary!r}, ...) first"
                )
            self.retire_runs(dictionary, name)
            self.db[ANALYSES].insert_one(run)
        return AnalysisWriter(self, run)

    def analysis(self, dictionary: str, name: str = "default") -> dict | None:
        """The complete run shown for (dictionary, name), or None."""
        run = self._current(dictionary, name)
        return None if run is None else self.public_run(run)

    def analyses(self, dictionary: str) -> list[dict]:
        """Every run of the dictionary's analyses (running, failed and complete), oldest first."""
        with self.errors(f"listing analyses of {dictionary!r}"):
            runs = self.db[ANALYSES].find({"dictionary": dictionary}).sort("created_at", ASCENDING)
            return [self.public_run(r) for r in runs]

    def retire_runs(self, dictionary: str, name: str, keep: dict | None = None) -> None:
        """Delete the runs of (dictionary, name) nobody will show: failed runs, runs whose writer
        died on this host, and, given the complete run ``keep``, the complete runs it replaces.
        Runs still being written by a live process, here or on another host, are left alone."""
        for run in list(self.db[ANALYSES].find({"dictionary": dictionary, "name": name})):
            if keep is not None and run["_id"] == keep["_id"]:
                continue
            if run["status"] == COMPLETE:
                stale = keep is not None and (run["completed_at"], run["_id"]) < (keep["completed_at"], keep["_id"])
            else:
                stale = run["status"] == FAILED or _writer_died(run)
            if stale:
                self._delete_run(run["_id"])

    def delete_run_features(self, run_id: str) -> None:
        self.db[FEATURES].delete_many({"analysis_id": run_id})
        self.db[DETAILS].delete_many({"analysis_id": run_id})

    def _delete_run(self, run_id: str) -> None:
        self.delete_run_features(run_id)  # features first: a crash in between leaves a run to retire again
        self.db[ANALYSES].delete_one({"_id": run_id})

    def _current(self, dictionary: str, name: str) -> dict | None:
        with self.errors(f"reading analysis {name!r} of {dictionary!r}"):
            runs = self.db[ANALYSES].find({"dictionary": dictionary, "name": name, "status": COMPLETE})
            return next(iter(runs.sort([("completed_at", DESCENDING), ("_id", DESCENDING)]).limit(1)), None)

    @staticmethod
    def public_run(run: dict) -> dict:
        run = dict(run)
        return {"id": run.pop("_id"), **run}

    # -----------------------------------------------------------------------------------------
    # Features
    # -----------------------------------------------------------------------------------------

    def feature(self, dictionary: str, index: int, analysis: str = "default") -> dict | None:
        """One whole feature of the analysis shown, or None."""
        run = self._current(dictionary, analysis)
        if run is None:
            return None
        key = {"analysis_id": run["_id"], "index": int(index)}
        with self.errors(f"reading feature {index} of {dictionary!r}"):
            summary = self.db[FEATURES].find_one(key, {"_id": 0})
            if summary is None:
                return None
            details = loaded_details(self.db[DETAILS].find_one(key, {"_id": 0}))
        return {**summary, **{k: v for k, v in details.items() if k not in summary}}

    def features(
        self, dictionary: str, analysis: str = "default", *, sort: str = "index", descending: bool = False,
        min_density: float | None = None, max_density: float | None = None, search: str | None = None,
        skip: int = 0, limit: int = 100,
    ) -> list[dict]:
        """Feature summaries (scalars and the explanation shown: no examples or histograms), filtered,
        sorted, paged. Sorting by a score (``SCORE_FIELDS``) lists only the features that have it."""
        if sort not in SORT_KEYS:
            raise ValueError(f"sort={sort!r}; choose one of {SORT_KEYS}")
        if skip < 0 or not 0 < limit <= MAX_PAGE:
            raise ValueError(f"need skip >= 0 and 0 < limit <= {MAX_PAGE}, got skip={skip}, limit={limit}")
        run = self._current(dictionary, analysis)
        if run is None:
            return []
        field = SCORE_FIELDS.get(sort, sort)
        order = [(field, DESCENDING if descending else ASCENDING)] + ([("index", ASCENDING)] if sort != "index" else [])

        def page(query: dict) -> list[dict]:
            return list(self.db[FEATURES].find(query, _SUMMARY).sort(order).skip(skip).limit(limit))

        with self.errors(f"listing features of {dictionary!r}"):
            return self._with_search(page, run["_id"], min_density, max_density, search, scored=sort)

    def count_features(
        self, dictionary: str, analysis: str = "default", *, min_density: float | None = None,
        max_density: float | None = None, search: str | None = None, scored: str | None = None,
    ) -> int:
        """How many features ``features`` would list with these filters (any page); ``scored``:
        the sort key, which counts only the features that have it when it is a score."""
        run = self._current(dictionary, analysis)
        if run is None:
            return 0
        with self.errors(f"counting features of {dictionary!r}"):
            return self._with_search(lambda q: self.count(FEATURES, q), run["_id"], min_density, max_density, search,
                                     scored)

    def set_interpretation(self, dictionary: str, index: int, text: str, analysis: str = "default") -> bool:
        """Set one feature's interpretation in the analysis shown; False if there is no such feature."""
        if not isinstance(text, str):
            raise ValueError(f"interpretation must be a string, got {type(text).__name__}")
        run = self._current(dictionary, analysis)
        if run is None:
            return False
        with self.errors(f"writing the interpretation of feature {index} of {dictionary!r}"):
            key = {"analysis_id": run["_id"], "index": int(index)}
            return self.db[FEATURES].update_one(key, {"$set": {"interpretation": text}}).matched_count == 1

    def count(self, collection: str, query: dict) -> int:
        """Count with the ``count`` command (the server counts; count_documents aggregates)."""
        try:
            return int(self.db.command(SON([("count", collection), ("query", query)]))["n"])
        except NotImplementedError:  # mongomock
            return self.db[collection].count_documents(query)

    def _with_search(self, run_query: Callable[[dict], Any], run_id: str, min_density, max_density, search,
                     scored: str | None = None) -> Any:
        query: dict[str, Any] = {"analysis_id": run_id}
        if scored in SCORE_FIELDS:
            query[SCORE_FIELDS[scored]] = {"$gte": -1.0}  # every score is in [-1, 1]; absent ones drop out
        if min_density is not None or max_density is not None:
            query["density"] = {
                **({"$gte": float(min_density)} if min_density is not None else {}),
                **({"$lte": float(max_density)} if max_density is not None else {}),
            }
        words = (search or "").split()
        if not words:
            return run_query(query)
        if self.text_search:
            try:
                return run_query({**query, "$text": {"$search": " ".join(words)}})
            except (NotImplementedError, OperationFailure):  # no $text here: use a regex from now on
                self.text_search = False
        pattern = {"$regex": "|".join(re.escape(w) for w in words), "$options": "i"}
        return run_query({**query, "$or": [{field: pattern} for field in TEXT_FIELDS]})


class NameTakenError(StoreError):
    """A record of another artifact already holds the name; ``holder`` is that record."""

    def __init__(self, collection: str, name: str, holder: dict) -> None:
        self.collection, self.name, self.holder = collection, name, holder
        where = holder.get("path") or holder.get("output_dir") or "another artifact"
        super().__init__(f"the store's {collection} already hold {name!r}, from {where}")


def _writer_died(run: dict) -> bool:
    """Whether a "running" run's writer is gone: its process died, or it is this process's and no
    AnalysisWriter here has it open (the database failed under it). Only this host can tell."""
    if run.get("host") != socket.gethostname():
        return False
    pid = run.get("pid", -1)
    return not process_alive(pid) or (pid == os.getpid() and run["_id"] not in ACTIVE_RUNS)


def _check_name(name: str, what: str) -> None:
    if not isinstance(name, str) or not name.strip() or name.startswith("$"):
        raise ValueError(f"{what} name must be a non-empty string not starting with '$', got {name!r}")


def _redact(uri: str) -> str:
    """The URI without its password."""
    return re.sub(r"//([^:/@]+):[^@/]*@", r"//\1:***@", uri)
