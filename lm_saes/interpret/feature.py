"""One feature, explained and scored: the record the store keeps (``lm_saes.store.explanations``).

    {"index", "status": "scored" | "failed", "explanation": str, "scores": {simulation, detection,
     fuzzing}, "failures": [{"stage", "error", "reply"}], "requests": [{"stage", "messages",
     "reply"}], "n_contexts": {"explain", "positive", "negative", "random"}, <the judge's extra fields>}

The three scores are asked for at once, after the explanation. A reply that cannot be used
(``ReplyError``) fails its stage only, recorded with its raw text; the feature is "scored" when
no stage failed (a score whose classes are not both present is left out, not failed). Any other
error (the endpoint is gone) propagates, and the run stops.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from lm_saes.interpret.contexts import FeatureContexts, detection_items, fuzzing_items
from lm_saes.interpret.judges import Judge, Log
from lm_saes.interpret.prompts import ReplyError
from lm_saes.interpret.scores import balanced_accuracy, correlation

SCORED, FAILED = "scored", "failed"


async def interpret_feature(explainer: Judge, scorer: Judge, contexts: FeatureContexts, seed: int) -> dict:
    """Explain the feature from ``contexts.explain`` and score that on the held-out contexts."""
    log: Log = []
    record: dict[str, Any] = {
        "index": contexts.index, "requests": log, "failures": [],
        "n_contexts": {"explain": len(contexts.explain), "positive": len(contexts.positives),
                       "negative": len(contexts.negatives), "random": len(contexts.random)},
    }
    try:
        text, extra = await explainer.explain(contexts, log)
    except ReplyError as e:
        record["failures"].append(_failure(e))
        return {**record, "status": FAILED}
    record.update(extra, explanation=text)
    outcomes = await _all([
        simulation_score(scorer, text, contexts, log),
        detection_score(scorer, text, contexts, seed, log),
        fuzzing_score(scorer, text, contexts, seed, log),
    ])
    record["scores"] = {}
    for name, outcome in zip(("simulation", "detection", "fuzzing"), outcomes):
        if isinstance(outcome, ReplyError):
            record["failures"].append(_failure(outcome))
        elif outcome is not None:
            record["scores"][name] = outcome
    return {**record, "status": FAILED if record["failures"] else SCORED}


async def simulation_score(judge: Judge, text: str, c: FeatureContexts, log: Log) -> float | None:
    """Correlation of the simulated and true activations over every token of the held-out activating
    and random contexts (OpenAI's "top and random")."""
    windows = c.positives + c.random
    predicted = await judge.simulate(c.index, text, windows, log)
    return correlation([p for row in predicted for p in row], [a for w in windows for a in w.acts])


async def detection_score(judge: Judge, text: str, c: FeatureContexts, seed: int, log: Log) -> float | None:
    """Balanced accuracy of telling the activating held-out contexts from the others."""
    items = detection_items(c, seed)
    if not items:
        return None
    verdicts = await judge.detect(c.index, text, [w for w, _ in items], log)
    return balanced_accuracy(verdicts, [fires for _, fires in items])


async def fuzzing_score(judge: Judge, text: str, c: FeatureContexts, seed: int, log: Log) -> float | None:
    """Balanced accuracy of telling right marks from decoy marks in the activating contexts."""
    items = fuzzing_items(c.positives, seed, c.index)
    if not items or all(it.correct for it in items):
        return None
    verdicts = await judge.fuzz(c.index, text, items, log)
    return balanced_accuracy(verdicts, [it.correct for it in items])


async def _all(coroutines: list[Awaitable]) -> list:
    """Run together; a ReplyError is returned in its place, any other error cancels the rest."""

    async def caught(coroutine: Awaitable):
        try:
            return await coroutine
        except ReplyError as e:
            return e

    tasks = [asyncio.ensure_future(caught(c)) for c in coroutines]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        raise


def _failure(e: ReplyError) -> dict:
    return {"stage": e.stage, "error": e.message, "reply": e.raw}
