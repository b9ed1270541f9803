"""Interpret one analyzed dictionary: choose the features, skip the finished ones, explain and
score the rest concurrently, and store each record as it finishes.

The run is resumable: a feature whose record (scored, or failed with its raw reply) exists for
this explainer and this analysis run is skipped, so killing a run and starting it again sends no
request twice for a finished feature. Finished records are flushed to the store every
``FLUSH_SECONDS`` (or ``FLUSH_RECORDS``), and on any error before it propagates: an endpoint that
stops answering, a refused key, Ctrl-C. ``dry_run`` builds every prompt and sends none.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

from tqdm.auto import tqdm

from lm_saes.errors import LmSaesError
from lm_saes.interpret.client import ChatClient, RequestStats, read_key
from lm_saes.interpret.config import InterpretConfig, LexicalConfig, OpenAIConfig, describe
from lm_saes.interpret.contexts import FeatureContexts, detection_items, fuzzing_items, split_contexts
from lm_saes.interpret.feature import FAILED, SCORED, interpret_feature
from lm_saes.interpret.judges import Judge, LexicalJudge, ModelJudge
from lm_saes.interpret.pool import ContextPool, build_pool
from lm_saes.interpret.prompts import (
    detect_messages, explain_messages, fuzz_messages, prompt_chars, simulate_messages,
)
from lm_saes.interpret.scores import SCORES, mean_interval
from lm_saes.store import Store
from lm_saes.store.explanations import (
    explained, explanation_scores, firing_features, sync_summaries, upsert_interpretation, whole_features,
    write_explanations,
)

FLUSH_SECONDS = 0.5
FLUSH_RECORDS = 256
CHARS_PER_TOKEN = 4  # the usual estimate for English BPE text; the dry run's token counts are ~
DRY_RUN_EXPLANATION = "x" * 120  # stands in for an explanation when sizing the scoring prompts


class InterpretResult(NamedTuple):
    dictionary: str
    explainer: str  # the explainer id records are keyed by
    kind: str  # "lexical" or "openai" (the explainer's)
    n_features: int  # chosen
    n_done_before: int  # already finished, skipped
    n_scored: int  # this run
    n_failed: int  # this run
    n_requests: int  # sent (every try), or in a dry run to be sent
    n_prompt_tokens: int  # dry run: the estimate (characters / 4); else 0
    means: dict  # score -> {n, mean, low, high} over every scored record of this explainer
    dry_run: bool
    seconds: float


def interpret_dictionary(cfg: InterpretConfig, store: Store, name: str) -> InterpretResult:
    """Interpret the chosen features of dictionary ``name`` (see the module docstring)."""
    start = time.perf_counter()
    run = store.analysis(name, cfg.analysis)
    if run is None:
        known = ", ".join(d["name"] for d in store.dictionaries() if d["analyses"]) or "none"
        raise LmSaesError(f"dictionary {name!r} has no complete analysis {cfg.analysis!r} in the store, so there "
                          f"is nothing to explain: run `lm-saes analyze` on it first (analyzed: {known})")
    explainer = cfg.explainer_id
    chosen = choose_features(cfg, store, run)
    done = explained(store, name, cfg.analysis, explainer, run["id"], failed_too=not cfg.retry_failed)
    todo = [i for i in chosen if i not in done]
    if not cfg.dry_run:
        sync_summaries(store, name, cfg.analysis, explainer, run["id"])
    pool = context_pool(cfg, store, name, run) if todo and (cfg.score_negatives or cfg.score_random) else None
    contexts = feature_contexts(cfg, store, run["id"], todo, pool)
    if cfg.dry_run:
        n_requests, chars = estimate(cfg, contexts)
        return InterpretResult(name, explainer, cfg.explainer.kind, len(chosen), len(chosen) - len(todo), 0, 0,
                               n_requests, chars // CHARS_PER_TOKEN, {}, True, time.perf_counter() - start)
    stats = RequestStats()
    counts = asyncio.run(_interpret(cfg, store, name, run["id"], contexts, len(todo), stats))
    means = summarize(cfg, store, name, run["id"])
    return InterpretResult(name, explainer, cfg.explainer.kind, len(chosen), len(chosen) - len(todo),
                           counts[SCORED], counts[FAILED], stats.sent, 0, means, False, time.perf_counter() - start)


def choose_features(cfg: InterpretConfig, store: Store, run: dict) -> list[int]:
    """``cfg.features`` (checked against the analysis) or every feature firing in ``min_contexts``
    contexts; then ``sample`` of them drawn with ``seed`` (the same draw on every run, so a sampled
    run resumes)."""
    firing = firing_features(store, run["id"], cfg.min_contexts)
    if cfg.features is not None:
        n = run.get("n_features")
        outside = [i for i in cfg.features if n is not None and i >= n]
        if outside:
            raise LmSaesError(f"features {outside[:10]} are not in {run['dictionary']!r}, which has {n} features")
        fires = set(firing)
        chosen = sorted({i for i in cfg.features if i in fires})
    else:
        chosen = firing
    if cfg.sample is not None and cfg.sample < len(chosen):
        chosen = sorted(random.Random(cfg.seed).sample(chosen, cfg.sample))
    return chosen


def context_pool(cfg: InterpretConfig, store: Store, name: str, run: dict) -> ContextPool:
    """The windows random and non-activating contexts are drawn from, cut from the analysis's 2d cache."""
    analysis_cfg = run.get("summary", {}).get("config", {})
    cache = cfg.cache or analysis_cfg.get("cache")
    if cache is None:
        raise LmSaesError(f"analysis {cfg.analysis!r} of {name!r} ran on the fly, without a 2d cache: set cache= to "
                          "a 2d cache of the analyzed hook, or score_negatives=0 and score_random=0")
    record = store.dictionary(name) or {}
    if not record.get("path") or not Path(record["path"]).is_dir():
        raise LmSaesError(f"the directory of dictionary {name!r} ({record.get('path')}) is gone; it encodes the "
                          "random and non-activating contexts (or set score_negatives=0 and score_random=0)")
    return build_pool(Path(cache), Path(record["path"]), run.get("summary", {}).get("hook"),
                      int(analysis_cfg.get("window", 8)), cfg.negative_contexts,
                      bool(analysis_cfg.get("include_bos", False)), cfg.batch_size, cfg.device)


def feature_contexts(cfg: InterpretConfig, store: Store, run_id: str, indices: list[int],
                     pool: ContextPool | None) -> Iterator[FeatureContexts]:
    """Each feature's explain and held-out contexts, read from the store a chunk at a time."""
    for doc in whole_features(store, run_id, indices):
        contexts = split_contexts(doc, cfg.explain_top, cfg.explain_per_band, cfg.score_top, cfg.score_per_band)
        yield pool.attach(contexts, cfg.score_negatives, cfg.score_random, cfg.seed) if pool is not None else contexts


def estimate(cfg: InterpretConfig, contexts: Iterable[FeatureContexts]) -> tuple[int, int]:
    """Requests and prompt characters a run would send (the scoring prompts sized with a stand-in
    explanation); the lexical judges send none."""
    n, chars = 0, 0
    explain_by_model, score_by_model = cfg.explainer.kind == "openai", cfg.judge.kind == "openai"
    for c in contexts:
        if explain_by_model:
            n, chars = n + 1, chars + prompt_chars(explain_messages(c.index, c.explain, c.max_activation))
        if score_by_model:
            text = DRY_RUN_EXPLANATION
            prompts = [simulate_messages(c.index, text, c.positives + c.random)]
            windows = [w for w, _ in detection_items(c, cfg.seed)]
            items = fuzzing_items(c.positives, cfg.seed, c.index)
            prompts += [detect_messages(c.index, text, windows)] if c.positives and c.negatives else []
            prompts += [fuzz_messages(c.index, text, items)] if not all(it.correct for it in items) else []
            n, chars = n + len(prompts), chars + sum(prompt_chars(p) for p in prompts)
    return n, chars


async def _interpret(cfg: InterpretConfig, store: Store, name: str, run_id: str,
                     contexts: Iterator[FeatureContexts], total: int, stats: RequestStats) -> dict[str, int]:
    counts = {SCORED: 0, FAILED: 0}
    buffer: list[dict] = []
    last_flush = time.monotonic()
    extra = {"explainer": cfg.explainer_id, "kind": cfg.explainer.kind, "scorer": describe(cfg.judge),
             **({"model": cfg.explainer.model} if isinstance(cfg.explainer, OpenAIConfig) else {})}

    def flush() -> None:
        nonlocal last_flush
        write_explanations(store, name, cfg.analysis, run_id, buffer)
        buffer.clear()
        last_flush = time.monotonic()

    bar = tqdm(total=total, unit="feature", desc=f"interpret {name}", disable=not cfg.progress or total == 0,
               dynamic_ncols=True)
    clients: dict[OpenAIConfig, ChatClient] = {}
    try:
        explainer, scorer = (_judge(judge, clients, stats) for judge in (cfg.explainer, cfg.judge))
        pending: set[asyncio.Future] = set()

        def finished(done: set[asyncio.Future]) -> None:
            error = None
            for task in done:
                if task.exception() is not None:  # the endpoint failed: keep the others, then stop
                    error = error or task.exception()
                    continue
                record = task.result()
                buffer.append({**record, **extra})
                counts[record["status"]] += 1
                bar.update(1)
            if error is not None:
                raise error
            bar.set_postfix({"req/s": f"{stats.rate():.1f}", "failed": counts[FAILED], "retries": stats.failed},
                            refresh=False)
            if len(buffer) >= FLUSH_RECORDS or time.monotonic() - last_flush >= FLUSH_SECONDS:
                flush()

        limit = max((j.concurrency for j in (cfg.explainer, cfg.judge) if isinstance(j, OpenAIConfig)), default=64)
        try:
            for c in contexts:
                if len(pending) >= limit:
                    done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                    finished(done)
                pending.add(asyncio.ensure_future(interpret_feature(explainer, scorer, c, cfg.seed)))
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                finished(done)
        except BaseException:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            raise
    finally:
        bar.close()
        for client in clients.values():
            await client.__aexit__(None, None, None)
        if buffer:
            flush()  # what finished is kept, whatever stopped the run
    return counts


def _judge(cfg: LexicalConfig | OpenAIConfig, clients: dict, stats: RequestStats) -> Judge:
    if isinstance(cfg, LexicalConfig):
        return LexicalJudge(cfg)
    if cfg not in clients:
        clients[cfg] = ChatClient(cfg, read_key(cfg), stats)
    return ModelJudge(clients[cfg])


def summarize(cfg: InterpretConfig, store: Store, name: str, run_id: str) -> dict:
    """Mean scores with 95% confidence intervals over this explainer's records, stored and returned."""
    records = explanation_scores(store, name, cfg.analysis, cfg.explainer_id, run_id)
    means = {}
    for score in SCORES:
        interval = mean_interval([r["scores"][score] for r in records if score in r.get("scores", {})])
        if interval is not None:
            means[score] = interval._asdict()
    upsert_interpretation(store, {
        "dictionary": name, "analysis": cfg.analysis, "explainer": cfg.explainer_id, "kind": cfg.explainer.kind,
        "scorer": describe(cfg.judge), "analysis_id": run_id, "means": means,
        "n_scored": sum(r["status"] == SCORED for r in records),
        "n_failed": sum(r["status"] == FAILED for r in records),
        **({"model": cfg.explainer.model} if isinstance(cfg.explainer, OpenAIConfig) else {}),
    })
    return means
