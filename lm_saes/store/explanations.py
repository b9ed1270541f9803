"""Explanations and their scores, beside the features they explain (written by `lm-saes interpret`).

Two collections and one field:

    explanations     {dictionary, analysis, index, explainer (unique together), analysis_id (the
                      run whose contexts were used), kind ("lexical" | "openai"), model?, status
                      ("scored" | "failed"), explanation?, scores {simulation?, detection?,
                      fuzzing?}, failures [...], requests [{stage, messages, reply}], created_at,
                      <the explainer's extra fields>}: one per feature and explainer, so several
                      explainers coexist and a rerun finds what is done
    interpretations  {dictionary, analysis, explainer (unique together), kind, model?,
                      analysis_id, n_scored, n_failed, means {score: {n, mean, low, high}},
                      updated_at}: each explainer's mean scores (what reports and sweeps show)
    features.explanation   {text, explainer, kind, status, scores}: on the feature's summary
                      document, the last explanation written for it, so the feature list shows,
                      sorts (``explanation.scores.<score>``) and searches it like any field

A record is written before the feature's summary is updated, so a crash in between leaves a
record whose summary the next run writes again (``sync_summaries``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import bson
from pymongo import ASCENDING, UpdateOne

from lm_saes.errors import StoreError
from lm_saes.store.documents import MAX_FEATURE_BYTES, loaded_details, plain
from lm_saes.store.schema import DETAILS, EXPLANATIONS, FEATURES, INTERPRETATIONS, now
from lm_saes.store.store import Store

SCORED, FAILED = "scored", "failed"
SCORE_NAMES = ("simulation", "detection", "fuzzing")


def explained(store: Store, dictionary: str, analysis: str, explainer: str, analysis_id: str,
              failed_too: bool = True) -> set[int]:
    """Indices of the features this explainer has finished on that analysis run (failed ones too,
    unless ``failed_too`` is False); records of an older run of the analysis do not count."""
    statuses = [SCORED, FAILED] if failed_too else [SCORED]
    query = {"dictionary": dictionary, "analysis": analysis, "explainer": explainer,
             "analysis_id": analysis_id, "status": {"$in": statuses}}
    with store.errors(f"reading the explanations of {dictionary!r}"):
        return {doc["index"] for doc in store.db[EXPLANATIONS].find(query, {"_id": 0, "index": 1})}


def summary_of(record: dict) -> dict | None:
    """What the feature list shows of a record: None when it holds no explanation."""
    if "explanation" not in record:
        return None
    return {"text": record["explanation"], "explainer": record["explainer"], "kind": record["kind"],
            "status": record["status"], "scores": dict(record.get("scores", {}))}


def write_explanations(store: Store, dictionary: str, analysis: str, run_id: str, records: list[dict]) -> None:
    """Store finished records (each with index, explainer, kind, status...) and show them on their
    features; a record replaces the same explainer's earlier one of that feature."""
    if not records:
        return
    docs = []
    for record in records:
        doc = plain({**record, "dictionary": dictionary, "analysis": analysis, "analysis_id": run_id,
                     "created_at": now()}, f"explanation of feature {record.get('index')}")
        if len(bson.encode(doc)) > MAX_FEATURE_BYTES:
            raise StoreError(f"the explanation record of feature {record['index']} is over "
                             f"{MAX_FEATURE_BYTES / 2**20:.0f} MiB encoded; lower the contexts per prompt")
        docs.append(doc)
    by_explainer: dict[str, list[int]] = {}
    for doc in docs:
        by_explainer.setdefault(doc["explainer"], []).append(doc["index"])
    with store.errors(f"writing explanations of {dictionary!r}"):
        for explainer, indices in by_explainer.items():  # earlier records of these features: replaced
            store.db[EXPLANATIONS].delete_many({"dictionary": dictionary, "analysis": analysis,
                                                "explainer": explainer, "index": {"$in": indices}})
        store.db[EXPLANATIONS].insert_many(docs, ordered=False)
        _show(store, run_id, docs)


def _show(store: Store, run_id: str, docs: list[dict]) -> None:
    updates = [UpdateOne({"analysis_id": run_id, "index": doc["index"]}, {"$set": {"explanation": summary}})
               for doc in docs if (summary := summary_of(doc)) is not None]
    if updates:
        store.db[FEATURES].bulk_write(updates, ordered=False)


def sync_summaries(store: Store, dictionary: str, analysis: str, explainer: str, run_id: str) -> int:
    """Write the summary of every finished record whose feature does not show one (a run killed
    between the two writes, or features re-analyzed); returns how many were written."""
    with store.errors(f"reading the explanations of {dictionary!r}"):
        shown = {d["index"] for d in store.db[FEATURES].find(  # nx-27017: no $exists on absent fields
            {"analysis_id": run_id, "explanation.text": {"$gte": ""}}, {"_id": 0, "index": 1})}
        missing = [d for d in store.db[EXPLANATIONS].find(
            {"dictionary": dictionary, "analysis": analysis, "explainer": explainer, "analysis_id": run_id},
            {"_id": 0, "requests": 0}) if d["index"] not in shown and "explanation" in d]
        _show(store, run_id, missing)
    return len(missing)


def feature_explanations(store: Store, dictionary: str, index: int, analysis: str = "default") -> list[dict]:
    """Every explainer's record of one feature (prompts and replies included), newest first."""
    with store.errors(f"reading the explanations of feature {index} of {dictionary!r}"):
        docs = store.db[EXPLANATIONS].find({"dictionary": dictionary, "analysis": analysis, "index": int(index)},
                                           {"_id": 0})
        return sorted(docs, key=lambda d: d.get("created_at", ""), reverse=True)


def explanation_scores(store: Store, dictionary: str, analysis: str, explainer: str, run_id: str) -> list[dict]:
    """``{index, status, scores}`` of every record of this explainer on that analysis run."""
    query = {"dictionary": dictionary, "analysis": analysis, "explainer": explainer, "analysis_id": run_id}
    with store.errors(f"reading the scores of {dictionary!r}"):
        return list(store.db[EXPLANATIONS].find(query, {"_id": 0, "index": 1, "status": 1, "scores": 1})
                    .sort("index", ASCENDING))


def upsert_interpretation(store: Store, doc: dict[str, Any]) -> None:
    """Create or replace the summary of (dictionary, analysis, explainer)."""
    key = {k: doc[k] for k in ("dictionary", "analysis", "explainer")}
    body = plain({**doc, "updated_at": now()}, f"interpretation summary of {key['dictionary']!r}")
    with store.errors(f"writing the interpretation summary of {key['dictionary']!r}"):
        store.db[INTERPRETATIONS].replace_one(key, body, upsert=True)


def interpretations(store: Store, dictionary: str | None = None) -> list[dict]:
    """Every explainer's summary (of one dictionary, or all), most recently updated first."""
    query = {} if dictionary is None else {"dictionary": dictionary}
    with store.errors("listing interpretation summaries"):
        docs = list(store.db[INTERPRETATIONS].find(query, {"_id": 0}))
    return sorted(docs, key=lambda d: d.get("updated_at", ""), reverse=True)


def firing_features(store: Store, run_id: str, min_contexts: int = 1) -> list[int]:
    """Indices of the features of an analysis run that fire in at least ``min_contexts`` contexts, ascending."""
    query = {"analysis_id": run_id, "density": {"$gt": 0.0}, "n_contexts": {"$gte": min_contexts}}
    with store.errors("listing the features that fire"):
        docs = store.db[FEATURES].find(query, {"_id": 0, "index": 1})
        return sorted(d["index"] for d in docs)


def whole_features(store: Store, run_id: str, indices: list[int], chunk: int = 256) -> Iterator[dict]:
    """The whole documents (summary and details) of these features of a run, in the order given,
    read ``chunk`` at a time; a missing index is skipped."""
    for start in range(0, len(indices), chunk):
        part = indices[start:start + chunk]
        query = {"analysis_id": run_id, "index": {"$in": part}}
        with store.errors("reading features to interpret"):
            summaries = {d["index"]: d for d in store.db[FEATURES].find(query, {"_id": 0, "peak_tokens": 0})}
            details = {d["index"]: loaded_details(d) for d in store.db[DETAILS].find(query, {"_id": 0})}
        for index in part:
            if index in summaries:
                yield {**details.get(index, {}), **summaries[index]}
