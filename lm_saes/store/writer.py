"""Writing one analysis run: features in bulk under a fresh run id, made visible at the end.

A run is an ``analyses`` document with ``status`` "running". Its features are inserted in chunks
(``insert_many``, unordered) tagged with the run's id, so no reader sees them: readers follow the
newest *complete* run of a (dictionary, analysis name). :meth:`AnalysisWriter.complete` flips the
run to "complete" with one single-document update (the commit point), then deletes the runs it
replaces. An exception inside ``with`` marks the run "failed" and deletes its features; a process
killed mid-write leaves it "running". Either way the previous complete run stays the one shown,
and the next ``begin_analysis`` of the same name removes the leftovers.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from pymongo.errors import BulkWriteError

from lm_saes.errors import StoreError
from lm_saes.store.documents import FeatureParts, peak_tokens, plain, split_feature, stored_details, top_tokens
from lm_saes.store.schema import ANALYSES, COMPLETE, DETAILS, FAILED, FEATURES, RUNNING, now

if TYPE_CHECKING:
    from lm_saes.store.store import Store

CHUNK_FEATURES = 256  # features per insert_many
CHUNK_BYTES = 16 * 2**20  # and at most this many encoded bytes
ACTIVE_RUNS: set[str] = set()  # runs an AnalysisWriter of this process is writing


class AnalysisWriter:
    """Writes one run of an analysis; use as a context manager (see the module docstring)."""

    def __init__(self, store: Store, run: dict) -> None:
        self.store = store
        self.run_id: str = run["_id"]
        self.dictionary: str = run["dictionary"]
        self.name: str = run["name"]
        self.n_features: int | None = run.get("n_features")
        self.n_written = 0
        self._status = RUNNING
        ACTIVE_RUNS.add(self.run_id)

    @property
    def status(self) -> str:
        """RUNNING until complete() or abort(), then COMPLETE or FAILED (see lm_saes.store.schema)."""
        return self._status

    @status.setter
    def status(self, value: str) -> None:
        self._status = value
        if value != RUNNING:
            ACTIVE_RUNS.discard(self.run_id)

    def __enter__(self) -> AnalysisWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.status != RUNNING:
            return
        if exc_type is not None:
            try:
                self.abort(f"{exc_type.__name__}: {exc}")
            except StoreError:
                pass  # the database is gone too; the run stays "running" and is cleaned up later
            return
        self.abort("closed without complete()")
        raise StoreError(f"{self._what} was closed without complete(); it is marked failed")

    @property
    def _what(self) -> str:
        return f"analysis {self.name!r} of dictionary {self.dictionary!r} (run {self.run_id})"

    def write_features(self, docs: Iterable[Mapping[str, Any]]) -> int:
        """Insert feature documents in bulk; returns how many. Call as often as needed."""
        self._check_running()
        n = 0
        for chunk in self._chunks(docs):
            with self.store.errors(f"writing features of {self._what}"):
                try:
                    self.store.db[FEATURES].insert_many([p.summary for p in chunk], ordered=False)
                    self.store.db[DETAILS].insert_many([stored_details(p.details) for p in chunk], ordered=False)
                except BulkWriteError as e:
                    raise StoreError(f"{self._duplicate(e, chunk)} in {self._what}") from e
                n += len(chunk)
                self.n_written += len(chunk)
                self.store.db[ANALYSES].update_one({"_id": self.run_id}, {"$set": {"n_written": self.n_written}})
        return n

    def complete(self, summary: Mapping[str, Any] | None = None) -> dict:
        """Make this run the analysis shown, replacing the previous one; returns the run document."""
        self._check_running()
        summary = plain(summary or {}, "analysis summary")
        with self.store.errors(f"completing {self._what}"):
            counts = {c: self.store.count(c, {"analysis_id": self.run_id}) for c in (FEATURES, DETAILS)}
            expected = self.n_written if self.n_features is None else self.n_features
            if set(counts.values()) != {expected}:
                self.abort(f"expected {expected} features, found {counts}")
                raise StoreError(f"{self._what} holds {counts} features, expected {expected}; it is marked failed")
            done = self.store.db[ANALYSES].update_one(
                {"_id": self.run_id, "status": RUNNING},
                {"$set": {"status": COMPLETE, "completed_at": now(), "summary": summary, "n_written": expected}},
            )
            if done.matched_count != 1:
                raise StoreError(f"{self._what} is no longer running (removed by another process?)")
            self.status = COMPLETE
            run = self.store.db[ANALYSES].find_one({"_id": self.run_id})
            self.store.retire_runs(self.dictionary, self.name, keep=run)
        return self.store.public_run(run)

    def abort(self, reason: str) -> None:
        """Mark this run failed and delete its features; the previous complete run stays shown."""
        if self.status != RUNNING:
            return
        self.status = FAILED
        with self.store.errors(f"aborting {self._what}"):
            failed = self.store.db[ANALYSES].update_one(
                {"_id": self.run_id, "status": RUNNING},
                {"$set": {"status": FAILED, "error": reason[:2000], "failed_at": now()}},
            )
            if failed.matched_count:  # not if it completed after all (the reply was lost)
                self.store.delete_run_features(self.run_id)

    def _check_running(self) -> None:
        if self.status != RUNNING:
            raise StoreError(f"{self._what} is {self.status}; begin a new analysis to write again")

    def _chunks(self, docs: Iterable[Mapping[str, Any]]) -> Iterator[list[FeatureParts]]:
        chunk: list[FeatureParts] = []
        size = 0
        for doc in docs:
            parts = split_feature(doc, self.dictionary, self.name, self.run_id)
            peaks = peak_tokens(parts.details.get("top_contexts"))
            if peaks:  # for Store.search_tokens: the small document answers token search
                parts.summary["peak_tokens"] = peaks
            if tops := top_tokens(parts.details.get("top_contexts")):  # a summary line without details
                parts.summary["top_tokens"] = tops
            if self.n_features is not None and parts.index >= self.n_features:
                raise StoreError(f"feature index {parts.index} is out of range for {self.n_features} features")
            if chunk and (len(chunk) >= CHUNK_FEATURES or size + parts.n_bytes > CHUNK_BYTES):
                yield chunk
                chunk, size = [], 0
            chunk.append(parts)
            size += parts.n_bytes
        if chunk:
            yield chunk

    @staticmethod
    def _duplicate(error: BulkWriteError, chunk: list[FeatureParts]) -> str:
        problems = error.details.get("writeErrors", [])
        duplicates = [e for e in problems if e.get("code") == 11000]
        if not duplicates:
            return f"the server refused features: {problems[:1]}"
        first = duplicates[0]
        index = (first.get("op") or {}).get("index")
        if index is None and isinstance(first.get("index"), int) and first["index"] < len(chunk):
            index = chunk[first["index"]].index
        return f"feature index {index} was written twice"

