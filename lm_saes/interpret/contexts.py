"""A feature's contexts for explaining and scoring, from its stored analysis document.

The analysis keeps, per feature, its top contexts (best first) and samples within equal-width
bands of its activation range (``lm_saes.analysis.documents``), each a window of tokens with the
feature's activation on every token. They are split without overlap:

    explain = top[0::2][:explain_top]  + every band's samples[0::2][:explain_per_band]
    score   = top[1::2][:score_top]    + every band's samples[1::2][:score_per_band]
    random  = score_random windows of the cache, with the feature's true activations
    silent  = score_negatives windows of the cache where the feature is zero (``pool.py``)

so the explainer sees the strongest context and the held-out set spans the same range (the
interleaving gives both halves contexts of similar strength). The simulation is scored on
score + random (OpenAI's "top and random"), detection on score + silent (Delphi), fuzzing on
score. Activations are shown to a model
as integers 0..10 (OpenAI's protocol): 10 a / max rounded half up for a > 0, at least 1, so that
any non-zero activation reads as a response.
"""

from __future__ import annotations

import math
import random
from typing import NamedTuple

MAX_LEVEL = 10  # the top of the 0..10 activation scale


class Window(NamedTuple):
    """A window of text: its tokens and the feature's activation on each."""

    tokens: list[str]
    acts: list[float]

    @property
    def active(self) -> bool:
        return any(a > 0 for a in self.acts)

    @property
    def text(self) -> str:
        return "".join(self.tokens)


class FeatureContexts(NamedTuple):
    """What ``lm-saes interpret`` needs of one feature."""

    index: int
    max_activation: float
    explain: list[Window]  # shown to the explainer
    positives: list[Window]  # held-out activating contexts (top, then bands)
    negatives: list[Window]  # held-out windows where the feature is zero (filled by pool.py)
    random: list[Window]  # held-out windows drawn at random, its true activations on them (idem)


def split_contexts(
    doc: dict, explain_top: int, explain_per_band: int, score_top: int, score_per_band: int,
) -> FeatureContexts:
    """The explain and held-out activating windows of a stored feature document."""
    top = [_window(e) for e in doc.get("top_contexts", [])]
    explain, positives = top[0::2][:explain_top], top[1::2][:score_top]
    for band in doc.get("quantiles", []):
        samples = [_window(e) for e in band.get("examples", [])]
        explain += samples[0::2][:explain_per_band]
        positives += samples[1::2][:score_per_band]
    return FeatureContexts(doc["index"], float(doc["max_activation"]), [w for w in explain if w.active],
                           [w for w in positives if w.active], [], [])


def _window(example: dict) -> Window:
    return Window(list(example["tokens"]), [float(a) for a in example["acts"]])


def levels(acts: list[float], max_activation: float) -> list[int]:
    """Activations on the 0..10 scale: 10 a / max rounded half up, and at least 1 for any a > 0."""
    if max_activation <= 0:
        return [0] * len(acts)
    return [0 if a <= 0 else max(1, min(MAX_LEVEL, math.floor(MAX_LEVEL * a / max_activation + 0.5))) for a in acts]


class Marked(NamedTuple):
    """A fuzzing item: a held-out activating window with some tokens marked."""

    window: Window
    marked: list[bool]  # one per token
    correct: bool  # whether the marks are the tokens where the feature fires


def fuzzing_items(positives: list[Window], seed: int, index: int) -> list[Marked]:
    """Half of the activating windows (at random) marked on their active tokens, the other half
    on as many tokens where the feature is zero (Delphi's fuzzing). A window whose every token is
    active cannot be marked wrongly and is shown correct."""
    rng = random.Random(f"fuzz-{seed}-{index}")
    decoys = set(rng.sample(range(len(positives)), len(positives) // 2))
    items = []
    for i, window in enumerate(positives):
        active = [a > 0 for a in window.acts]
        silent = [j for j, on in enumerate(active) if not on]
        n = sum(active)
        if i in decoys and len(silent) >= n:
            chosen = set(rng.sample(silent, n))
            items.append(Marked(window, [j in chosen for j in range(len(active))], False))
        else:
            items.append(Marked(window, active, True))
    return items


def detection_items(contexts: FeatureContexts, seed: int) -> list[tuple[Window, bool]]:
    """The held-out windows with whether the feature fires in them, shuffled (same for every judge)."""
    items = [(w, True) for w in contexts.positives] + [(w, False) for w in contexts.negatives]
    random.Random(f"detect-{seed}-{contexts.index}").shuffle(items)
    return items
