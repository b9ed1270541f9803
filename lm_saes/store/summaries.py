"""A feature's summary line: the one line it is known by wherever it is listed.

    interpretation   a person's, set with ``Store.set_interpretation``, when there is one;
    explanation      else the explanation `lm-saes interpret` wrote last (``features.explanation``);
    tokens           else its most characteristic tokens: the peak tokens of its top contexts,
                     most frequent first (``features.top_tokens``, written with the analysis).

Everything is read from the features' small summary documents (never the details), so a list of
features, a token search, a feature's neighbours or an inference result gets its lines in one
indexed query.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from lm_saes.store.schema import FEATURES
from lm_saes.store.store import Store

LINE_FIELDS = {"_id": 0, "index": 1, "interpretation": 1, "explanation": 1, "top_tokens": 1}


def summary_line(doc: Mapping[str, Any]) -> dict | None:
    """``{source, text, tokens}`` of a feature summary document (see the module docstring), or None
    for a feature with nothing to say (it never fired, or its analysis predates ``top_tokens``).
    ``tokens`` lists the tokens of a "tokens" line, which ``text`` gives as JSON strings."""
    interpretation = doc.get("interpretation")
    if isinstance(interpretation, str) and interpretation.strip():
        return {"source": "interpretation", "text": interpretation, "tokens": []}
    explanation = doc.get("explanation")
    if isinstance(explanation, Mapping) and isinstance(explanation.get("text"), str) and explanation["text"].strip():
        return {"source": "explanation", "text": explanation["text"], "tokens": []}
    tokens = [t for t in doc.get("top_tokens") or [] if isinstance(t, str)]
    if tokens:
        return {"source": "tokens", "text": ", ".join(json.dumps(t, ensure_ascii=False) for t in tokens),
                "tokens": tokens}
    return None


def summary_lines(store: Store, run: Mapping[str, Any] | None, indices: Iterable[int]) -> dict[int, dict]:
    """The summary line of each of ``indices`` that has one in the analysis run ``run``
    (``Store.analysis``; None: no lines), by index, in one query."""
    wanted = sorted({int(i) for i in indices})
    if run is None or not wanted:
        return {}
    with store.errors(f"reading the summary lines of {run.get('dictionary')!r}"):
        docs = store.db[FEATURES].find({"analysis_id": run["id"], "index": {"$in": wanted}}, LINE_FIELDS)
        lines = {doc["index"]: summary_line(doc) for doc in docs}
    return {index: line for index, line in lines.items() if line is not None}
