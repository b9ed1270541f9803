"""What may enter the store: plain values, finite floats, and features of bounded size.

Every document passes through :func:`plain` at the boundary: numpy and torch scalars and arrays
become Python numbers and lists, tuples become lists, and anything else (bytes, objects, pickles)
is refused, as are NaN and infinities, with the path of the offending value.

A feature is split by :func:`split_feature` into its summary (top-level scalars: ``index``,
``density``, ``max_activation``, ``interpretation`` and any other number or string) and its
details (top-level lists and dicts). The writer adds ``peak_tokens`` to the summary: the peak token
of each top context as :func:`token_key` (stripped, lower-cased), under a multikey index for token
search (:func:`peak_tokens`), and ``top_tokens``, the few peak tokens the feature's summary line
names (:func:`top_tokens`). Top-level None values are dropped (never stored as null).
The details are stored as one JSON string (:func:`stored_details`): nobody queries inside them,
and a wire-protocol server decodes one string ~30x faster than the nested lists it holds
(nx-27017: 36 ms -> 1.2 ms for a 12 KB feature), which is what a feature page waits for.
Both parts together must encode to at most :data:`MAX_FEATURE_BYTES`, the one place that bounds a
feature's size whatever the dictionary's size: a feature's size depends on how many examples it
keeps (top-k, bands) and how long they are (window), not on the number of features.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import datetime
from pathlib import PurePath
from typing import Any, NamedTuple

import bson

from lm_saes.errors import StoreError

MAX_FEATURE_BYTES = 8 * 1024 * 1024  # half of MongoDB's 16 MiB document limit
INT64_MAX = 2**63 - 1  # the largest integer a document holds (BSON int64): bound API and CLI integers by it
_INT64 = INT64_MAX + 1
_RESERVED = ("_id", "analysis_id")


def plain(value: Any, where: str = "document") -> Any:
    """``value`` as BSON-safe Python (None, bool, int, float, str, list, dict), checked."""
    return _plain(value, where)


def _plain(value: Any, where: Any) -> Any:
    # ``where`` is a string or a (parent, key) pair, formatted by _path only for an error message
    kind = type(value)
    if value is None or kind is bool or kind is str:
        return value
    if kind is float or kind is int:
        if kind is float and not math.isfinite(value):
            raise StoreError(
                f"{_path(where)} is {value}: the store accepts only finite numbers; find where the "
                "analysis produced it (a dead or exploding feature?)"
            )
        if kind is int and not -_INT64 <= value < _INT64:
            raise StoreError(f"{_path(where)} = {value} does not fit in a 64-bit integer")
        return value
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if type(key) is not str or not key or key[0] == "$" or "." in key:
                raise StoreError(f"{_path(where)} has key {key!r}: keys must be non-empty strings without '$' or '.'")
            out[key] = _plain(item, (where, key))
        return out
    if isinstance(value, (list, tuple)):
        flat = _flat_list(value)
        if flat is not None:
            return flat
        return [_plain(item, (where, i)) for i, item in enumerate(value)]
    if isinstance(value, (bool, str)):  # subclasses
        return value
    if isinstance(value, (int, float)):  # subclasses (IntEnum, numpy.float64): as the base type
        return _plain(float(value) if isinstance(value, float) else int(value), where)
    if hasattr(value, "tolist"):
        return _plain(value.tolist(), where)  # numpy / torch scalars and arrays
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, PurePath):
        return str(value)
    raise StoreError(
        f"{_path(where)} has type {type(value).__name__}; store documents hold only numbers, strings, "
        "booleans, lists and dicts"
    )


def _path(where: Any) -> str:
    keys = []
    while isinstance(where, tuple):
        where, key = where
        keys.append(f"[{key}]" if isinstance(key, int) else f".{key}")
    return str(where) + "".join(reversed(keys))


def _flat_list(value: list | tuple) -> list | None:
    """A list of only strings, or only finite floats and int64 ints, checked at C speed; else None
    (mixed, nested or bad items go through the item-by-item path, which names the bad one)."""
    kinds = set(map(type, value))
    if kinds <= {str}:
        return list(value)
    if not kinds <= {float, int}:
        return None
    if int in kinds:
        ints = [v for v in value if type(v) is int] if float in kinds else value
        if not (-_INT64 <= min(ints) and max(ints) < _INT64):
            return None
    if float in kinds:
        try:
            if not math.isfinite(sum(value)):  # NaN and infinities make the sum non-finite
                return None
        except OverflowError:
            return None
    return list(value)


class FeatureParts(NamedTuple):
    """One feature as stored: the summary (features) and the details (feature_details)."""

    index: int
    summary: dict  # scalars + dictionary, analysis, analysis_id, index
    details: dict  # lists and dicts + analysis_id, index
    n_bytes: int  # encoded size of both


def stored_details(details: Mapping[str, Any]) -> dict:
    """The details document as written: its keys, and everything else as one JSON string."""
    keys = {"analysis_id": details["analysis_id"], "index": details["index"]}
    rest = {k: v for k, v in details.items() if k not in keys}
    return {**keys, "json": json.dumps(rest, separators=(",", ":"), allow_nan=False)}


def loaded_details(stored: Mapping[str, Any] | None) -> dict:
    """The lists and dicts of a stored details document (inverse of :func:`stored_details`)."""
    return json.loads(stored["json"]) if stored else {}


def token_key(token: str) -> str:
    """How a token is compared in token search: surrounding whitespace stripped, lower-cased."""
    return token.strip().lower()


def peak_tokens(top_contexts: Any) -> list[str]:
    """The token at the peak of each top context (``tokens[peak - start]``) as its token_key,
    one per context (repeats kept, so a search can count matches); [] without top contexts."""
    keys = []
    for example in top_contexts if isinstance(top_contexts, list) else []:
        try:
            token = example["tokens"][example["peak"] - example["start"]]
        except (KeyError, IndexError, TypeError):
            continue
        if isinstance(token, str) and token.strip():
            keys.append(token_key(token))
    return keys


TOP_TOKENS = 5  # the peak tokens a feature's summary line names


def top_tokens(top_contexts: Any, n: int = TOP_TOKENS) -> list[str]:
    """The feature's most characteristic tokens for its summary line: the distinct peak tokens of
    its top contexts as they read (whitespace kept: a newline is a token too), the most frequent
    first, ties in the contexts' (best-first) order; [] without top contexts."""
    counts: dict[str, int] = {}
    for example in top_contexts if isinstance(top_contexts, list) else []:
        try:
            token = example["tokens"][example["peak"] - example["start"]]
        except (KeyError, IndexError, TypeError):
            continue
        if isinstance(token, str) and token:
            counts[token] = counts.get(token, 0) + 1
    return sorted(counts, key=lambda t: -counts[t])[:n]  # a stable sort keeps first-seen order in ties


def split_feature(doc: Mapping[str, Any], dictionary: str, analysis: str, analysis_id: str) -> FeatureParts:
    """Check one feature document and split it for the store (see the module docstring)."""
    if not isinstance(doc, Mapping):
        raise StoreError(f"a feature document must be a dict, got {type(doc).__name__}")
    where = f"feature {doc.get('index', '?')}"
    doc = plain(doc, where)
    index = doc.get("index")
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        raise StoreError(f"{where}: 'index' must be a non-negative integer, got {index!r}")
    for key in _RESERVED:
        if key in doc:
            raise StoreError(f"{where}: {key!r} is set by the store; leave it out of feature documents")
    for key, expected in (("dictionary", dictionary), ("analysis", analysis)):
        if key in doc and doc[key] != expected:
            raise StoreError(f"{where}: {key}={doc[key]!r} but it is being written to {key} {expected!r}")
    for key in ("density", "max_activation"):
        if not isinstance(doc.get(key), (int, float)) or isinstance(doc.get(key), bool):
            raise StoreError(f"{where}: {key!r} must be a number, got {doc.get(key)!r}")
        doc[key] = float(doc[key])
    if not 0.0 <= doc["density"] <= 1.0:
        raise StoreError(f"{where}: density {doc['density']} is not a fraction in [0, 1]")
    if "interpretation" in doc and not isinstance(doc["interpretation"], (str, type(None))):
        raise StoreError(f"{where}: 'interpretation' must be a string, got {type(doc['interpretation']).__name__}")

    keys = {"analysis_id": analysis_id, "index": index}
    summary = {**keys, "dictionary": dictionary, "analysis": analysis}
    details = dict(keys)
    for key, value in doc.items():
        if value is None or key in summary:
            continue
        (details if isinstance(value, (list, dict)) else summary)[key] = value
    n_bytes = len(bson.encode(summary)) + len(bson.encode(details))
    if n_bytes > MAX_FEATURE_BYTES:
        raise StoreError(
            f"{where} encodes to {n_bytes / 2**20:.1f} MiB, over the store's limit of "
            f"{MAX_FEATURE_BYTES / 2**20:.0f} MiB per feature (MongoDB refuses documents over 16 MiB); "
            "keep fewer or shorter examples per feature (lower top_k, window, n_bands or per_band)"
        )
    return FeatureParts(index, summary, details, n_bytes)
