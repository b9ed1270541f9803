"""The store's collections, their indexes and the schema version.

Collections (one database, ``StoreConfig.database``)::

    meta             {_id: "schema", version, created_at}
    models           {name (unique), ...}                      registry docs, free-form
    caches           {name (unique), ...}
    dictionaries     {name (unique), updated_at, ...}
    analyses         {_id: run id, dictionary, name, status, created_at, host, pid, meta,
                      n_features, n_written, completed_at, summary, error}
    features         {analysis_id, dictionary, analysis, index, density, max_activation,
                      interpretation?, peak_tokens?, <the feature's other top-level scalars>}
    feature_details  {analysis_id, index, json: <the feature's lists and dicts as one JSON string>}
    sweeps           {name (unique), updated_at, output_dir, status, varied, rows: [...]}
                     one document per `lm-saes sweep` (see lm_saes.sweep.record)

One run of ``begin_analysis`` is one ``analyses`` document; its ``_id`` (``analysis_id``) tags
every feature it writes, so (analysis_id, index) is unique, and it names one (dictionary,
analysis name, run). A feature is split in two documents: the small one (scalars) answers every
list, sort, count and search of the UI; the large one (top contexts, histograms...) is read only
when one feature is shown. Documents hold strings, numbers, lists and dicts (no pickles).

Rules that keep the schema right on every wire-protocol server, nx-27017 included:
- states are strings (``status``), never booleans: nx-27017 stores a top-level ``$set`` of True as 1;
- optional fields are left out, never stored as null, and no query tests for null or absence:
  nx-27017 confuses a null field with a missing one (``$exists: False`` matches both) and its
  ``count_documents({"x": None})`` disagrees with its ``find``;
- the server's version is never read: nx-27017 reports None;
- timestamps are ISO-8601 UTC strings (sortable, JSON-able, no timezone surprises).
"""

from __future__ import annotations

from datetime import datetime, timezone

from pymongo import ASCENDING, DESCENDING, TEXT
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError, OperationFailure

from lm_saes.errors import StoreError

SCHEMA_VERSION = 2  # 2: feature details stored as one JSON string

META = "meta"
MODELS = "models"
CACHES = "caches"
DICTIONARIES = "dictionaries"
ANALYSES = "analyses"
FEATURES = "features"
DETAILS = "feature_details"
SWEEPS = "sweeps"

RUNNING, COMPLETE, FAILED = "running", "complete", "failed"

# Sort keys of Store.features, each backed by an (analysis_id, key) index.
SORT_KEYS = ("index", "density", "max_activation")

_INDEXES: dict[str, list[tuple[list[tuple[str, int]], dict]]] = {
    MODELS: [([("name", ASCENDING)], {"unique": True})],
    CACHES: [([("name", ASCENDING)], {"unique": True})],
    DICTIONARIES: [([("name", ASCENDING)], {"unique": True})],
    ANALYSES: [([("dictionary", ASCENDING), ("name", ASCENDING), ("status", ASCENDING)], {})],
    FEATURES: [
        ([("analysis_id", ASCENDING), ("index", ASCENDING)], {"unique": True}),
        ([("analysis_id", ASCENDING), ("density", DESCENDING)], {}),
        ([("analysis_id", ASCENDING), ("max_activation", DESCENDING)], {}),
        ([("dictionary", ASCENDING), ("analysis", ASCENDING)], {}),
        ([("analysis_id", ASCENDING), ("peak_tokens", ASCENDING)], {}),  # multikey: token search
    ],
    DETAILS: [([("analysis_id", ASCENDING), ("index", ASCENDING)], {"unique": True})],
    SWEEPS: [([("name", ASCENDING)], {"unique": True})],
}


def now() -> str:
    """The current UTC time as an ISO-8601 string (fixed width, so it sorts as text)."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def has_schema(db: Database) -> bool:
    """Whether ``db`` holds a store (its schema record), without creating anything."""
    return db[META].find_one({"_id": "schema"}, {"_id": 1}) is not None


def ensure_schema(db: Database) -> bool:
    """Check the schema version (creating it in an empty database) and create the indexes.

    Returns whether the server accepted a text index on ``features.interpretation``; without
    one, search falls back to a case-insensitive regular expression (a scan of one analysis).
    """
    meta = db[META].find_one({"_id": "schema"})
    if meta is None:
        try:
            db[META].insert_one({"_id": "schema", "version": SCHEMA_VERSION, "created_at": now()})
        except DuplicateKeyError:  # another process created it first
            meta = db[META].find_one({"_id": "schema"})
    if meta is not None and meta.get("version") != SCHEMA_VERSION:
        raise StoreError(
            f"database {db.name!r} has store schema version {meta.get('version')!r} and this lm-saes "
            f"reads version {SCHEMA_VERSION}; use the lm-saes version that wrote it, or another "
            "database (StoreConfig.database)"
        )
    for collection, indexes in _INDEXES.items():
        for keys, options in indexes:
            db[collection].create_index(keys, **options)
    try:
        db[FEATURES].create_index([("interpretation", TEXT)])
    except (OperationFailure, NotImplementedError):
        db[FEATURES].create_index([("interpretation", ASCENDING)])
        return False
    return True
