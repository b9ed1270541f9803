"""Token search: the features whose top contexts peak on a given token.

The writer keeps, in each feature's small summary document, ``peak_tokens``: the peak token of
every top context as :func:`~lm_saes.store.documents.token_key` (stripped, lower-cased), repeats
kept, under a multikey (analysis_id, peak_tokens) index. A search is one indexed query on the
summaries (no details are read) plus counting the matches of the features found. Analyses written
before ``peak_tokens`` existed answer no token search until they are analyzed again.
"""

from __future__ import annotations

from lm_saes.store.documents import token_key
from lm_saes.store.schema import FEATURES
from lm_saes.store.store import Store


def search_tokens(store: Store, dictionary: str, token: str, analysis: str = "default", limit: int = 20) -> list[dict]:
    """``{index, density, max_activation, matches}`` of the features whose top contexts peak on
    ``token`` (``matches``: how many of them do), most matches first, then the strongest."""
    key = token_key(token)
    if not key:
        raise ValueError("token search needs a token that is not blank")
    if limit <= 0:
        raise ValueError(f"limit must be > 0, got {limit}")
    run = store.analysis(dictionary, analysis)
    if run is None:
        return []
    with store.errors(f"searching the peak tokens of {dictionary!r}"):
        docs = list(store.db[FEATURES].find(
            {"analysis_id": run["id"], "peak_tokens": {"$in": [key]}},  # nx-27017: no bare array equality
            {"_id": 0, "index": 1, "density": 1, "max_activation": 1, "peak_tokens": 1},
        ))
    for doc in docs:
        doc["matches"] = doc.pop("peak_tokens", []).count(key)
    docs.sort(key=lambda d: (-d["matches"], -d["max_activation"], d["index"]))
    return docs[:limit]
