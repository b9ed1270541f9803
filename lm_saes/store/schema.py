"""The store's collections, their indexes and the schema version.

Collections (one database, ``StoreConfig.database``)::

    meta             {_id: "schema", version, created_at}
    models           {name (unique), ...}                      registry docs, free-form
    caches           {name (unique), ...}
    dictionaries     {name (unique), updated_at, ...}
    analyses         {_id: run id, dictionary, name, status, created_at, host, pid, meta,
                      n_features, n_written, completed_at, summary, error}
    features         {analysis_id, dictionary, analysis, index, density, max_activation,
                      interpretation?, peak_tokens?, top_tokens?, <the feature's other top-level scalars>}
    feature_details  {analysis_id, index, json: <the feature's lists and dicts as one JSON string>}
    sweeps           {name (unique), updated_at, output_dir, status, varied, rows: [...]}
                     one document per `lm-saes sweep` (see lm_saes.sweep.record)
    explanations     {dictionary, analysis, index, explainer (unique together), status, scores, ...}
    interpretations  {dictionary, analysis, explainer (unique together), means, ...}
                     what `lm-saes interpret` writes (see lm_saes.store.explanations); a feature's
                     summary document also shows its last explanation as ``explanation``

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
EXPLANATIONS = "explanations"
INTERPRETATIONS = "interpretations"

RUNNING, COMPLETE, FAILED = "running", "complete", "failed"
TEXT_INDEX = "feature_text"

# Sort keys of Store.features, each backed by an (analysis_id, key) index; a score sorts the
# features that have one (SCORE_FIELDS: the field of each score on the summary document).
SCORE_FIELDS = {name: f"explanation.scores.{name}" for name in ("simulation", "detection", "fuzzing")}
SORT_KEYS = ("index", "density", "max_activation", *SCORE_FIELDS)
TEXT_FIELDS = ("interpretation", "explanation.text")  # what a feature search reads

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
        *(([("analysis_id", ASCENDING), (field, DESCENDING)], {}) for field in SCORE_FIELDS.values()),
    ],
    DETAILS: [([("analysis_id", ASCENDING), ("index", ASCENDING)], {"unique": True})],
    SWEEPS: [([("name", ASCENDING)], {"unique": True})],
    EXPLANATIONS: [
        ([("dictionary", ASCENDING), ("analysis", ASCENDING), ("index", ASCENDING), ("explainer", ASCENDING)],
         {"unique": True}),
        ([("dictionary", ASCENDING), ("analysis", ASCENDING), ("explainer", ASCENDING), ("status", ASCENDING)], {}),
    ],
    INTERPRETATIONS: [
        ([("dictionary", ASCENDING), ("analysis", ASCENDING), ("explainer", ASCENDING)], {"unique": True}),
    ],
}


def now() -> str:
    """The current UTC time as an ISO-8601 string (fixed width, so it sorts as text)."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def has_schema(db: Database) -> bool:
    """Whether ``db`` holds a store (its schema record), without creating anything."""
    return db[META].find_one({"_id": "schema"}, {"_id": 1}) is not None


def ensure_schema(db: Database) -> bool:
    """Check the schema version (creating it in an empty database) and create the indexes.

    Returns whether the server accepted a text index on the features' TEXT_FIELDS; without
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
    return _text_index(db)


def _text_index(db: Database) -> bool:
    """One text index over TEXT_FIELDS, without stop words or stemming (a token such as "the" stays
    searchable). It is made once and remembered in ``meta`` (nx-27017 refuses to build a text index
    over several fields again once documents exist, and does not list text indexes). An older
    store's index on ``interpretation`` alone is dropped first; where the server still refuses
    (nx-27017 with documents in), search reads both fields with a regular expression instead."""
    marker = db[META].find_one({"_id": "text_index"})
    if marker is not None and marker.get("fields") == list(TEXT_FIELDS):
        return bool(marker.get("text"))
    keys = [(field, TEXT) for field in TEXT_FIELDS]
    text = False
    for attempt in range(2):
        try:
            db[FEATURES].create_index(keys, name=TEXT_INDEX, default_language="none")
            text = True
            break
        except NotImplementedError:  # mongomock
            break
        except OperationFailure:  # MongoDB: one text index per collection; drop the older one and retry
            if attempt == 0:
                try:
                    db[FEATURES].drop_index("interpretation_text")
                except (OperationFailure, NotImplementedError):
                    pass
    if not text:
        for field in TEXT_FIELDS:
            db[FEATURES].create_index([(field, ASCENDING)])
    db[META].replace_one({"_id": "text_index"}, {"_id": "text_index", "fields": list(TEXT_FIELDS), "text": text},
                         upsert=True)
    return text
