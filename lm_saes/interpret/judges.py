"""Who explains and scores: the lexical baseline, or a model behind an OpenAI-compatible endpoint.

Both answer the same four questions (``Judge``); a model's calls are logged (stage, messages,
reply) into the list each method is given, so the store keeps every prompt and raw reply.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from lm_saes.interpret import lexical, prompts
from lm_saes.interpret.client import ChatClient
from lm_saes.interpret.config import LexicalConfig
from lm_saes.interpret.contexts import FeatureContexts, Marked, Window

T = TypeVar("T")
Log = list[dict[str, Any]]


class Judge(Protocol):
    kind: str  # "lexical" or "openai"

    async def explain(self, contexts: FeatureContexts, log: Log) -> tuple[str, dict]:
        """The explanation, and fields the record keeps beside it."""
        ...

    async def simulate(self, index: int, explanation: str, windows: Sequence[Window], log: Log) -> list[list[float]]:
        """Predicted activation 0..10 of every token of every window."""
        ...

    async def detect(self, index: int, explanation: str, windows: Sequence[Window], log: Log) -> list[bool]:
        """For each window, whether the feature fires somewhere in it."""
        ...

    async def fuzz(self, index: int, explanation: str, items: Sequence[Marked], log: Log) -> list[bool]:
        """For each item, whether its marked tokens are the ones the feature fires on."""
        ...


class LexicalJudge:
    """The offline baseline (``lm_saes.interpret.lexical``): no model, no request."""

    kind = "lexical"

    def __init__(self, cfg: LexicalConfig) -> None:
        self.cfg = cfg

    async def explain(self, contexts: FeatureContexts, log: Log) -> tuple[str, dict]:
        tokens = lexical.characteristic_tokens(contexts.explain, self.cfg.n_tokens)
        if not tokens:
            raise prompts.ReplyError("explain", "the explained contexts hold no activation", "")
        return lexical.format_explanation(tokens), {"tokens": [{"token": t, "weight": w} for t, w in tokens]}

    async def simulate(self, index: int, explanation: str, windows: Sequence[Window], log: Log) -> list[list[float]]:
        weights = lexical.explanation_weights(explanation)
        return [lexical.simulate(weights, w.tokens) for w in windows]

    async def detect(self, index: int, explanation: str, windows: Sequence[Window], log: Log) -> list[bool]:
        weights = lexical.explanation_weights(explanation)
        return [lexical.detects(weights, w.tokens) for w in windows]

    async def fuzz(self, index: int, explanation: str, items: Sequence[Marked], log: Log) -> list[bool]:
        weights = lexical.explanation_weights(explanation)
        return [lexical.marks_look_right(weights, it.window.tokens, it.marked) for it in items]


class ModelJudge:
    """A chat model through ``ChatClient``: the prompts of ``lm_saes.interpret.prompts``."""

    kind = "openai"

    def __init__(self, client: ChatClient) -> None:
        self.client = client

    async def _ask(self, stage: str, messages: prompts.Messages, log: Log, parse: Callable[[str], T]) -> T:
        entry: dict[str, Any] = {"stage": stage, "messages": messages}
        log.append(entry)
        entry["reply"] = await self.client.complete(stage, messages)
        return parse(entry["reply"])

    async def explain(self, contexts: FeatureContexts, log: Log) -> tuple[str, dict]:
        messages = prompts.explain_messages(contexts.index, contexts.explain, contexts.max_activation)
        return await self._ask("explain", messages, log, prompts.parse_explanation), {}

    async def simulate(self, index: int, explanation: str, windows: Sequence[Window], log: Log) -> list[list[float]]:
        messages = prompts.simulate_messages(index, explanation, windows)
        lengths = [len(w.tokens) for w in windows]
        return await self._ask("simulate", messages, log, lambda raw: prompts.parse_simulation(raw, lengths))

    async def detect(self, index: int, explanation: str, windows: Sequence[Window], log: Log) -> list[bool]:
        messages = prompts.detect_messages(index, explanation, windows)
        return await self._ask("detect", messages, log, lambda raw: prompts.parse_verdicts("detect", raw, len(windows)))

    async def fuzz(self, index: int, explanation: str, items: Sequence[Marked], log: Log) -> list[bool]:
        messages = prompts.fuzz_messages(index, explanation, items)
        return await self._ask("fuzz", messages, log, lambda raw: prompts.parse_verdicts("fuzz", raw, len(items)))
