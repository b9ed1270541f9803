"""Steering: continue a prompt with a feature's decoder direction written into a hook point.

Four continuations are generated side by side, one batch row each, one forward per new token
(no KV cache: every step runs the whole sequence, so steering applies at every position, the
prompt's and the continuation's, exactly as in a single forward of the final text):

    row 0  unsteered, greedy        row 1  steered, greedy
    row 2  unsteered, sampled       row 3  steered, sampled

Steering changes the activation x [ctx, d] at ``Steering.hook`` at every position:

    add:    x + strength * d                  d = W_dec[feature], the feature's decoder direction
    clamp:  x + (strength - a(x)) * d         a(x): the feature's activation, so that the feature
                                              reads ``strength`` everywhere (Templeton et al. 2024)

A sampled row draws from softmax(logits / temperature) by the Gumbel-max trick,
argmax(logits / temperature + g) with g ~ Gumbel(0, 1) per vocabulary entry, and both sampled
rows use the same g at each step. So the steered and unsteered samples differ only by what
steering changes: with strength 0 in add mode they are the same tokens, as the greedy rows are.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Literal, NamedTuple

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from lm_saes.errors import ModelError
from lm_saes.models.backend import LanguageModel

Mode = Literal["add", "clamp"]
ROWS = (("unsteered", "greedy"), ("steered", "greedy"), ("unsteered", "sampled"), ("steered", "sampled"))
STEERED = torch.tensor([False, True, False, True])  # [rows]
SAMPLED = torch.tensor([False, False, True, True])  # [rows]


class Steering(NamedTuple):
    """Where and how a feature's direction changes the model's activations."""

    hook: str  # the hook point whose activation is changed (a dictionary's output hook)
    direction: Float[Tensor, "d"]  # the feature's decoder row W_dec[feature]
    mode: Mode
    strength: float  # add: the multiple of ``direction`` added; clamp: the activation the feature is set to
    activation: Callable[[Tensor], Tensor] | None = None  # clamp: [..., d_in] -> [...], the feature's activation
    read_hook: str | None = None  # clamp: where ``activation`` reads (default ``hook``; a transcoder's input)


class Generation(NamedTuple):
    ids: list[list[int]]  # per row of ROWS: the new token ids
    stopped: Literal["length", "time"]  # all max_new_tokens were generated, or the time ran out first


def added(x: Float[Tensor, "rows ctx d"], direction: Float[Tensor, "d"],
          coefficient: Float[Tensor, "rows"]) -> Float[Tensor, "rows ctx d"]:
    """``x + coefficient * direction`` at every position of each row."""
    return x + coefficient[:, None, None] * direction


def clamped(x: Float[Tensor, "rows ctx d"], act: Float[Tensor, "rows ctx"], direction: Float[Tensor, "d"],
            value: float, rows: Bool[Tensor, "rows"]) -> Float[Tensor, "rows ctx d"]:
    """``x + (value - act) * direction`` in the chosen ``rows`` (the feature then reads ``value``
    if the encoder is linear along ``direction``), ``x`` in the others."""
    return x + (rows[:, None] * (value - act))[..., None] * direction


def next_tokens(logits: Float[Tensor, "rows vocab"], sampled: Bool[Tensor, "rows"], temperature: float,
                gumbel: Float[Tensor, "vocab"]) -> Tensor:
    """Each row's next token: argmax of the logits, or in ``sampled`` rows of
    ``logits / temperature + gumbel`` (a draw from softmax(logits / temperature))."""
    noisy = logits / temperature + gumbel
    return torch.where(sampled, noisy.argmax(-1), logits.argmax(-1))


def steering_hooks(steering: Steering) -> list[tuple[str, Callable]]:
    """transformer_lens hooks applying ``steering`` to the STEERED rows of a ROWS batch."""
    on = STEERED

    def write(act: Tensor, hook) -> Tensor:
        direction = steering.direction.to(device=act.device, dtype=act.dtype)
        rows = on.to(act.device)
        if steering.mode == "add":
            return added(act, direction, rows.to(act.dtype) * steering.strength)
        source = seen.get("x", act)
        feature = steering.activation(source).to(device=act.device, dtype=act.dtype)  # [rows, ctx]
        return clamped(act, feature, direction, steering.strength, rows)

    seen: dict[str, Tensor] = {}
    if steering.mode == "clamp" and steering.read_hook not in (None, steering.hook):
        return [(steering.read_hook, lambda act, hook: seen.__setitem__("x", act)), (steering.hook, write)]
    return [(steering.hook, write)]


@torch.inference_mode()
def generate_steered(lm: LanguageModel, prompt: Sequence[int], steering: Steering, max_new_tokens: int,
                     temperature: float = 1.0, seed: int = 0, timeout_s: float = 10.0) -> Generation:
    """Continue ``prompt`` (token ids, framing included) in the four ROWS at once, ``max_new_tokens``
    tokens each, or fewer when ``timeout_s`` runs out (checked after each token; at least one)."""
    if not prompt:
        raise ValueError("the prompt holds no token")
    if steering.mode == "clamp" and steering.activation is None:
        raise ValueError("clamping needs the feature's activation function")
    deadline = time.monotonic() + timeout_s
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.tensor([list(prompt)] * len(ROWS), dtype=torch.long)  # [rows, ctx]
    hooks = steering_hooks(steering)
    new: list[Tensor] = []
    stopped: Literal["length", "time"] = "length"
    for step in range(max_new_tokens):
        logits = lm.logits(tokens, hooks)[:, -1].float().cpu()  # [rows, vocab]
        if not torch.isfinite(logits).all():
            raise ModelError(f"the steered model's logits are not finite at strength {steering.strength:g}; "
                             "use a smaller strength")
        uniform = torch.rand(logits.shape[-1], generator=generator).clamp_(min=1e-20)  # [vocab]
        chosen = next_tokens(logits, SAMPLED, temperature, -torch.log(-torch.log(uniform)))
        new.append(chosen)
        tokens = torch.cat([tokens, chosen[:, None]], dim=1)
        if step + 1 < max_new_tokens and time.monotonic() > deadline:
            stopped = "time"
            break
    return Generation(torch.stack(new, dim=1).tolist(), stopped)
