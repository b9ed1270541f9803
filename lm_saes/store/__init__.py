"""The analysis store: dictionaries, analyses and features in MongoDB, through pymongo.

With ``mongo_uri`` set (in ``StoreConfig`` or the MONGO_URI environment variable) the store talks
to that MongoDB; otherwise it starts (or joins) the embedded nx-27017 server on
``StoreConfig.data_dir`` (default ``work/store/``; see ``lm_saes.store.embedded`` for how
processes share it and when it stops). One code path either way: pymongo over the wire.

    from lm_saes.config import StoreConfig
    from lm_saes.store import open_store

    with open_store(StoreConfig()) as store:                   # Store
        store.upsert_dictionary("gpt2-l6-topk", {"d_sae": 16384, "path": "..."})
        with store.begin_analysis("gpt2-l6-topk", "default", meta={...}, n_features=16384) as w:
            w.write_features(docs)                             # Iterable[dict]; bulk, chunked
            w.complete({"tokens": 1_000_000})                  # the new run replaces the old one
        store.features("gpt2-l6-topk", sort="density", descending=True, limit=50)
        store.feature("gpt2-l6-topk", 123)

API (every database failure raises ``lm_saes.errors.StoreError`` naming the server and the fix):

    open_store(cfg: StoreConfig | None = None, *, create=True) -> Store    also a context manager;
                                                                 create=False: NoStoreError if none
    Store.close() -> None                                       leaves the embedded server
    Store.upsert_dictionary(name, doc=None, *, identity=None, replace=False) -> None
                                                                also upsert_model, upsert_cache; a name
                                                                held by another identity raises NameTakenError
    Store.name_holder(collection, name, identity) -> dict | None the record of another identity holding name
    Store.dictionaries() -> list[dict]                           each with "analyses": [names]
    Store.dictionary(name) -> dict | None                        also models(), caches()
    Store.delete_dictionary(name) -> bool                        with its analyses and features
    Store.upsert_sweep(name, doc, *, identity=None, replace=False) -> None   a sweep's record (lm_saes.sweep)
    Store.sweeps() -> list[dict]                                 records without rows; sweep(name) whole
    Store.begin_analysis(dictionary, name="default", meta=None, n_features=None) -> AnalysisWriter
    AnalysisWriter.write_features(docs: Iterable[dict]) -> int   insert_many in chunks
    AnalysisWriter.complete(summary=None) -> dict                the commit point; returns the run
    AnalysisWriter.abort(reason) -> None                         what leaving ``with`` by an exception does
    Store.analysis(dictionary, name="default") -> dict | None    the complete run shown
    Store.analyses(dictionary) -> list[dict]                     every run, any status
    Store.feature(dictionary, index, analysis="default") -> dict | None       the whole feature
    Store.features(dictionary, analysis="default", *, sort="index"|"density"|"max_activation"|"simulation"
                   |"detection"|"fuzzing", descending=False, min_density=None, max_density=None,
                   search=None, skip=0, limit=100) -> list[dict]   summaries: scalars + explanation
    Store.count_features(dictionary, analysis="default", *, min_density, max_density, search, scored) -> int
    Store.set_interpretation(dictionary, index, text, analysis="default") -> bool

Explanations (``lm_saes.store.explanations``, written by `lm-saes interpret`): one record per
(dictionary, analysis, feature, explainer) with its scores, prompts and raw replies
(``write_explanations``, ``explained``, ``feature_explanations``), each explainer's mean scores
(``upsert_interpretation``, ``interpretations``), and on each feature's summary the last
explanation written (``explanation``: text, explainer, kind, status, scores), which
``Store.features`` sorts by (``sort="simulation" | "detection" | "fuzzing"``: the features that
have that score) and searches with the interpretation.

Feature documents are plain dicts with at least ``index`` (int >= 0), ``density`` (fraction of
tokens), ``max_activation`` and optionally ``interpretation`` (str); the store adds
``dictionary``, ``analysis`` (name) and ``analysis_id`` (run). numpy/torch values are converted,
NaN and infinities refused, and each feature is limited to ``MAX_FEATURE_BYTES`` encoded
(``lm_saes.store.documents``). Runs are written idempotently: a complete run replaces the previous
one of the same name; an interrupted run never shows (``lm_saes.store.writer``).

Search (``search=``) uses MongoDB's ``$text`` over a text index on ``interpretation`` and
``explanation.text`` (whole words, no stemming or stop words, any word matches; nx-27017 requires
all of them). nx-27017 accepts the text index and answers ``$text``; where a
server has no ``$text`` (mongomock) the store falls back to a case-insensitive regex of the words,
which scans the analysis's features instead of using an index (so does a store made before
explanations on nx-27017, which cannot rebuild its text index over documents).

Token search (``lm_saes.store.search.search_tokens(store, dictionary, token, analysis, limit)``) matches a token against each feature's ``peak_tokens`` (the
peak token of every top context, stripped and lower-cased, kept in the small summary document at
write time) through a multikey (analysis_id, peak_tokens) index: no details are scanned. Analyses
written before ``peak_tokens`` existed answer no token search until they are analyzed again.
"""

from lm_saes.store.documents import MAX_FEATURE_BYTES
from lm_saes.store.embedded import acquire_server, release_server, server_state, stop_server
from lm_saes.store.schema import SCHEMA_VERSION
from lm_saes.store.store import Store, open_store
from lm_saes.store.writer import AnalysisWriter

__all__ = [
    "MAX_FEATURE_BYTES", "SCHEMA_VERSION", "AnalysisWriter", "Store", "acquire_server", "open_store",
    "release_server", "server_state", "stop_server",
]
