"""The lexical baseline: an explanation made of tokens, and a simulator that reads tokens.

Explainer: a feature's characteristic tokens are those that carry its activation and reliably
fire it, over the contexts it is explained from:

    weight(t) = (activation on the occurrences of t / activation on all tokens)
                x (occurrences of t where it fires / occurrences of t),

tokens compared stripped and lower-cased (whitespace-only tokens as they are). The second factor
keeps a frequent token that fires the feature only in some contexts (a newline, "the") from
standing for it. The explanation is the top ``n_tokens`` as JSON strings with their weights:
``"king" 0.31, "queen" 0.12``.

Simulator: predicts 10 * weight(t) / max weight on every token t the explanation names (its
quoted strings, with their weights; or, for a free-text explanation, its words with weight 1)
and 0 elsewhere. Detection says a context fires when some token is predicted above 0; fuzzing
says the marks are right when the marked tokens are predicted higher, on average, than the
others. It is what "the feature is these tokens" predicts, and nothing more: a floor that an
explanation written by a model should beat.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Sequence

from lm_saes.interpret.contexts import MAX_LEVEL, Window

_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"(?:\s*\(?\s*([0-9]*\.?[0-9]+)\)?)?')
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?")


def token_key(token: str) -> str:
    """How tokens are compared: stripped and lower-cased, a whitespace-only token as it is."""
    return token.strip().lower() or token


def characteristic_tokens(windows: Sequence[Window], n_tokens: int) -> list[tuple[str, float]]:
    """The ``n_tokens`` tokens of largest weight (mass x firing rate, see the module docstring),
    largest first (ties by token), with weights normalised by the total mass."""
    mass: dict[str, float] = defaultdict(float)
    seen: dict[str, int] = defaultdict(int)
    fired: dict[str, int] = defaultdict(int)
    for window in windows:
        for token, act in zip(window.tokens, window.acts):
            key = token_key(token)
            seen[key] += 1
            if act > 0:
                mass[key] += act
                fired[key] += 1
    total = sum(mass.values())
    if total <= 0:
        return []
    weights = {key: m * fired[key] / seen[key] for key, m in mass.items()}
    ranked = sorted(weights.items(), key=lambda kv: (-kv[1], kv[0]))[:n_tokens]
    return [(token, weight / total) for token, weight in ranked]


def format_explanation(tokens: Sequence[tuple[str, float]]) -> str:
    return ", ".join(f"{json.dumps(token, ensure_ascii=False)} {weight:.3f}" for token, weight in tokens)


def explanation_weights(text: str) -> dict[str, float]:
    """The tokens an explanation names and their weights: its quoted strings (weight as written,
    else 1), or, when it quotes nothing, its words (weight 1)."""
    weights: dict[str, float] = {}
    for quoted, weight in _QUOTED.findall(text):
        try:
            token = json.loads(f'"{quoted}"')
        except json.JSONDecodeError:
            token = quoted
        key = token_key(token)
        weights[key] = max(weights.get(key, 0.0), float(weight) if weight else 1.0)
    if not weights:
        weights = {word.lower(): 1.0 for word in _WORD.findall(text)}
    return {k: w for k, w in weights.items() if w > 0}


def simulate(weights: dict[str, float], tokens: Sequence[str]) -> list[float]:
    """Predicted activation 0..10 of each token: 10 * its weight / the largest weight."""
    if not weights:
        return [0.0] * len(tokens)
    scale = MAX_LEVEL / max(weights.values())
    return [scale * weights.get(t.strip().lower() or t, 0.0) for t in tokens]  # token_key, inlined: the hot loop


def detects(weights: dict[str, float], tokens: Sequence[str]) -> bool:
    """Whether some token of the context is predicted to activate."""
    return any(p > 0 for p in simulate(weights, tokens))


def marks_look_right(weights: dict[str, float], tokens: Sequence[str], marked: Sequence[bool]) -> bool:
    """Whether the marked tokens are predicted higher, on average, than the unmarked ones."""
    predicted = simulate(weights, tokens)
    on = [p for p, m in zip(predicted, marked) if m]
    off = [p for p, m in zip(predicted, marked) if not m]
    return bool(on) and sum(on) / len(on) > (sum(off) / len(off) if off else 0.0)
