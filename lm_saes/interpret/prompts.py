"""Chat prompts for an explainer and a scorer model, and the parsers of their replies.

The format follows OpenAI's explain-and-simulate protocol (Bills et al. 2023): a context is
shown one token per line as ``token<TAB>activation`` between ``<start>`` and ``<end>``, the
activation an integer from 0 (silent) to 10 (the feature's strongest response). Detection and
fuzzing follow Delphi (Paulo et al. 2024): numbered contexts as plain text, fuzzing's marked
tokens between ``<<`` and ``>>``, and a JSON list of 0/1 verdicts back. Every prompt opens with
``Feature <index>`` so a request log can be read per feature.

A reply that cannot be used raises :class:`ReplyError` carrying the raw text, which the run
records as the feature's failure.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from lm_saes.interpret.contexts import MAX_LEVEL, Marked, Window, levels

Messages = list[dict[str, str]]
MAX_EXPLANATION_CHARS = 1000

_ROLE = (
    "We study the features of a sparse dictionary trained on a language model's internal "
    "activations. Each feature responds to something particular in short passages of text."
)
EXPLAIN_SYSTEM = (
    f"{_ROLE} You will see passages where one feature is active, one token per line as "
    f"token<TAB>activation. Activations are integers from 0 (no response) to {MAX_LEVEL} (the "
    "feature's strongest response). Find what the tokens with non-zero activations have in common, "
    "and how their context matters. Reply with one short sentence saying what the feature responds "
    "to, nothing else. Do not list the examples."
)
SIMULATE_SYSTEM = (
    f"{_ROLE} Given an explanation of a feature, predict its activation on every token of some "
    f"passages, as integers from 0 (no response) to {MAX_LEVEL} (strongest response). Most tokens "
    "of most passages have activation 0."
)
DETECT_SYSTEM = (
    f"{_ROLE} Given an explanation of a feature and numbered passages, say for each passage "
    "whether the feature is active on some token of it."
)
FUZZ_SYSTEM = (
    f"{_ROLE} Given an explanation of a feature and numbered passages in which some tokens are "
    "marked <<like this>>, say for each passage whether the marked tokens are the ones the "
    "feature is active on."
)


class ReplyError(Exception):
    """A reply the run cannot use; ``raw`` is what the endpoint sent."""

    def __init__(self, stage: str, message: str, raw: str) -> None:
        super().__init__(f"{stage}: {message}")
        self.stage, self.message, self.raw = stage, message, raw


def _escape(token: str) -> str:
    return token.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")


def _passage(tokens: Sequence[str], values: Sequence[int] | None = None) -> str:
    lines = [_escape(t) if values is None else f"{_escape(t)}\t{v}" for t, v in zip(tokens, values or tokens)]
    return "<start>\n" + "\n".join(lines) + "\n<end>"


def _chat(system: str, user: str) -> Messages:
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def explain_messages(index: int, windows: Sequence[Window], max_activation: float) -> Messages:
    blocks = [f"Passage {i + 1}:\n{_passage(w.tokens, levels(w.acts, max_activation))}" for i, w in enumerate(windows)]
    return _chat(EXPLAIN_SYSTEM, f"Feature {index}\n\n" + "\n\n".join(blocks)
                 + f"\n\nWhat does feature {index} respond to? One sentence.")


def simulate_messages(index: int, explanation: str, windows: Sequence[Window]) -> Messages:
    blocks = [f"Passage {i + 1} ({len(w.tokens)} tokens):\n{_passage(w.tokens)}" for i, w in enumerate(windows)]
    return _chat(SIMULATE_SYSTEM, f"Feature {index}\nExplanation: {explanation}\n\n" + "\n\n".join(blocks)
                 + f"\n\nReply with JSON only: a list of {len(windows)} lists, one per passage in order, each with "
                 f"one integer 0-{MAX_LEVEL} per token.")


def _verdicts(system: str, index: int, explanation: str, passages: Sequence[str], yes: str) -> Messages:
    """Numbered one-line passages and a JSON list of 0/1 verdicts to give, 1 meaning ``yes``."""
    lines = "\n".join(f"{i + 1}: {_escape(p)}" for i, p in enumerate(passages))
    return _chat(system, f"Feature {index}\nExplanation: {explanation}\n\nPassages:\n{lines}\n\nReply with JSON "
                 f"only: a list of {len(passages)} numbers, 1 if {yes}, else 0.")


def detect_messages(index: int, explanation: str, windows: Sequence[Window]) -> Messages:
    return _verdicts(DETECT_SYSTEM, index, explanation, [w.text for w in windows],
                     "the feature is active in that passage")


def fuzz_messages(index: int, explanation: str, items: Sequence[Marked]) -> Messages:
    marked = ["".join(f"<<{t}>>" if m else t for t, m in zip(it.window.tokens, it.marked)) for it in items]
    return _verdicts(FUZZ_SYSTEM, index, explanation, marked, "the marked tokens are where the feature is active")


# --- replies ------------------------------------------------------------------------------------


def parse_explanation(raw: str) -> str:
    """The explanation: the reply's first non-empty line, without quotes or a leading label."""
    lines = [line.strip() for line in raw.strip().splitlines() if line.strip()]
    if not lines:
        raise ReplyError("explain", "the reply is empty", raw)
    text = lines[0]
    for label in ("explanation:", "answer:"):
        if text.lower().startswith(label):
            text = text[len(label):].strip()
    text = text.strip("\"'` ")
    if not text:
        raise ReplyError("explain", "the reply holds no explanation", raw)
    if len(text) > MAX_EXPLANATION_CHARS:
        raise ReplyError("explain", f"the explanation is over {MAX_EXPLANATION_CHARS} characters", raw)
    return text


def _json_list(stage: str, raw: str) -> list:
    """The outermost JSON list in the reply (models wrap JSON in prose or code fences)."""
    start, end = raw.find("["), raw.rfind("]")
    if start < 0 or end <= start:
        raise ReplyError(stage, "the reply holds no JSON list", raw)
    try:
        value = json.loads(raw[start:end + 1])
    except json.JSONDecodeError as e:
        raise ReplyError(stage, f"the reply's list is not valid JSON ({e.msg})", raw) from e
    if not isinstance(value, list):
        raise ReplyError(stage, "the reply holds no JSON list", raw)
    return value


def _number(stage: str, value, raw: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ReplyError(stage, f"{json.dumps(value)[:40]} is not a number", raw)
    return float(value)


def parse_simulation(raw: str, lengths: Sequence[int]) -> list[list[float]]:
    """One list of predicted activations per passage, clipped to 0..10, each of its passage's length."""
    value = _json_list("simulate", raw)
    if len(lengths) == 1 and value and not isinstance(value[0], list):
        value = [value]  # one passage answered as a flat list
    if len(value) != len(lengths):
        raise ReplyError("simulate", f"{len(value)} lists for {len(lengths)} passages", raw)
    out = []
    for i, (row, n) in enumerate(zip(value, lengths)):
        if not isinstance(row, list) or len(row) != n:
            got = len(row) if isinstance(row, list) else "no list"
            raise ReplyError("simulate", f"passage {i + 1} has {n} tokens, the reply gives {got}", raw)
        out.append([min(float(MAX_LEVEL), max(0.0, _number("simulate", v, raw))) for v in row])
    return out


def parse_verdicts(stage: str, raw: str, n: int) -> list[bool]:
    """``n`` verdicts: 1/0 (or true/false) per passage."""
    value = _json_list(stage, raw)
    if len(value) != n:
        raise ReplyError(stage, f"{len(value)} verdicts for {n} passages", raw)
    verdicts = []
    for v in value:
        if isinstance(v, bool):
            verdicts.append(v)
        elif _number(stage, v, raw) in (0.0, 1.0):
            verdicts.append(v == 1)
        else:
            raise ReplyError(stage, f"verdict {v} is neither 0 nor 1", raw)
    return verdicts


def prompt_chars(messages: Messages) -> int:
    return sum(len(m["content"]) for m in messages)
