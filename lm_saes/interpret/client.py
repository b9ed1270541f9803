"""An OpenAI-compatible chat-completions client (httpx, asyncio) that bounds, retries and explains.

- At most ``concurrency`` requests are in flight (a semaphore).
- A 429, a 5xx, a timeout or a refused connection is retried up to ``max_retries`` times after
  ``backoff_s * 2**attempt`` seconds (with jitter, at most ``max_backoff_s``; a Retry-After header
  wins). When the retries run out the run stops with an :class:`~lm_saes.errors.EndpointError`.
- A 401/403 (the key), a 404 (the model or the URL) stops the run at once, with what to fix.
- Any other refusal (400, 422: a prompt too long...) and a body that is not a chat completion
  raise :class:`~lm_saes.interpret.prompts.ReplyError`: that feature is recorded as failed.

The key is read from the environment variable ``api_key_env`` names, sent as a bearer token, and
blanked out of every message this module raises.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time

import httpx

from lm_saes.errors import EndpointError
from lm_saes.interpret.config import OpenAIConfig
from lm_saes.interpret.prompts import Messages, ReplyError

MAX_ERROR_CHARS = 300


class RequestStats:
    """Requests sent (every try), failed tries, and the rate since the first one."""

    def __init__(self) -> None:
        self.sent = 0
        self.failed = 0
        self.start: float | None = None

    def rate(self) -> float:
        if self.start is None:
            return 0.0
        return self.sent / max(time.monotonic() - self.start, 1e-9)


def read_key(cfg: OpenAIConfig) -> str | None:
    """The key from ``cfg.api_key_env``; None when no variable is named."""
    if not cfg.api_key_env:
        return None
    key = os.environ.get(cfg.api_key_env)
    if not key:
        raise EndpointError(
            f"the environment variable {cfg.api_key_env} (api_key_env) holding the key for {cfg.base_url} is "
            "not set: export it, or set api_key_env to another variable (or to \"\" for a server that needs none)"
        )
    return key


class ChatClient:
    """One endpoint and model; use as ``async with ChatClient(cfg, key, stats) as client``."""

    def __init__(self, cfg: OpenAIConfig, key: str | None, stats: RequestStats) -> None:
        self.cfg, self._key, self.stats = cfg, key, stats
        self._limit = asyncio.Semaphore(cfg.concurrency)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._http = httpx.AsyncClient(
            base_url=cfg.base_url, headers=headers, timeout=cfg.timeout_s,
            limits=httpx.Limits(max_connections=cfg.concurrency), trust_env=False,
        )

    async def __aenter__(self) -> ChatClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self._http.aclose()

    async def complete(self, stage: str, messages: Messages) -> str:
        """The reply's text (``choices[0].message.content``)."""
        body = {"model": self.cfg.model, "messages": messages, "temperature": self.cfg.temperature,
                "max_tokens": self.cfg.max_tokens}
        where = f"{self.cfg.base_url}/chat/completions"
        for attempt in range(self.cfg.max_retries + 1):
            async with self._limit:
                if self.stats.start is None:
                    self.stats.start = time.monotonic()
                self.stats.sent += 1
                try:
                    response = await self._http.post("/chat/completions", json=body)
                except httpx.TimeoutException:
                    problem, wait = f"no answer within timeout_s={self.cfg.timeout_s:g} s", None
                except httpx.TransportError as e:
                    problem, wait = f"cannot connect ({type(e).__name__}: {self._clean(str(e)) or 'no detail'})", None
                else:
                    if response.status_code == 200:
                        return self._content(stage, response)
                    problem, wait = self._refusal(stage, where, response), _retry_after(response)
            self.stats.failed += 1
            if attempt == self.cfg.max_retries:
                raise EndpointError(
                    f"{where}: {problem}, still after {self.cfg.max_retries} retries. Check that the server runs "
                    "and base_url is right; finished features are kept, run the same command again to go on"
                )
            await asyncio.sleep(self._backoff(attempt, wait))
        raise AssertionError("unreachable")

    def _refusal(self, stage: str, where: str, response: httpx.Response) -> str:
        """What a non-200 answer means: a problem worth retrying (returned), or raised at once."""
        status, detail = response.status_code, self._clean(_error_message(response))
        if status == 429 or status >= 500:
            return f"HTTP {status} ({detail})"
        if status in (401, 403):
            key = f"the key in ${self.cfg.api_key_env}" if self.cfg.api_key_env else "no key (api_key_env is \"\")"
            raise EndpointError(f"{where} refused {key} (HTTP {status}: {detail}); set a valid key")
        if status == 404:
            raise EndpointError(
                f"{where} answered 404 for model {self.cfg.model!r} ({detail}): the server does not serve that "
                "model, or base_url is not an OpenAI-compatible API root (e.g. it lacks /v1)"
            )
        raise ReplyError(stage, f"the endpoint refused the request (HTTP {status}: {detail})", self._clean(response.text))

    def _content(self, stage: str, response: httpx.Response) -> str:
        try:
            content = response.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise ReplyError(stage, "the answer is not a chat completion", self._clean(response.text)) from None
        if not isinstance(content, str):
            raise ReplyError(stage, "the completion holds no text", self._clean(response.text))
        return self._clean(content)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.cfg.max_backoff_s)
        wait = self.cfg.backoff_s * 2**attempt
        return min(wait * (0.5 + random.random() / 2), self.cfg.max_backoff_s)

    def _clean(self, text: str) -> str:
        """``text`` without the key (servers may echo it)."""
        return text.replace(self._key, "***") if self._key else text


def _retry_after(response: httpx.Response) -> float | None:
    try:
        value = float(response.headers.get("retry-after", ""))
    except ValueError:
        return None
    return max(value, 0.0)


def _error_message(response: httpx.Response) -> str:
    """The server's error message (OpenAI's ``{"error": {"message"}}`` or the body), one line."""
    try:
        body = response.json()
        error = body.get("error", body) if isinstance(body, dict) else body
        message = error.get("message", json.dumps(error)) if isinstance(error, dict) else str(error)
    except ValueError:
        message = response.text or response.reason_phrase
    message = " ".join(str(message).split())
    return message[:MAX_ERROR_CHARS] + ("..." if len(message) > MAX_ERROR_CHARS else "")
