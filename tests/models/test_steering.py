"""Steering: the direction added or the feature clamped by hand-computed values, Gumbel-max draws
that follow the softmax, and the four batched continuations equal to one-row generation loops
(the slow twin) on a real model."""

from __future__ import annotations

import math

import pytest
import torch

from lm_saes.config import ModelConfig
from lm_saes.errors import ModelError
from lm_saes.models.backend import load_language_model
from lm_saes.models.steering import ROWS, Steering, added, clamped, generate_steered, next_tokens

HOOK = "blocks.1.hook_resid_post"


@pytest.fixture(scope="module")
def lm(model_dir):
    return load_language_model(ModelConfig(name=str(model_dir), device="cpu"))


@pytest.fixture(scope="module")
def direction() -> torch.Tensor:
    d = torch.randn(32, generator=torch.Generator().manual_seed(1))  # d_model of the test model
    return d / d.norm()


def test_adding_moves_every_position_of_the_chosen_rows_by_the_coefficient():
    x = torch.tensor([[[1.0, 2.0], [3.0, 4.0]], [[1.0, 2.0], [3.0, 4.0]]])  # [rows 2, ctx 2, d 2]
    out = added(x, torch.tensor([1.0, -1.0]), torch.tensor([0.0, 2.0]))
    assert out.tolist() == [[[1.0, 2.0], [3.0, 4.0]], [[3.0, 0.0], [5.0, 2.0]]]


def test_clamping_sets_a_linear_feature_to_the_value_in_the_chosen_rows():
    direction = torch.tensor([0.6, 0.8])  # unit norm: the feature a(x) = x . direction reads it exactly
    x = torch.tensor([[[1.0, 0.0], [0.0, 5.0]], [[1.0, 0.0], [0.0, 5.0]]])  # [rows 2, ctx 2, d 2]
    act = x @ direction  # [[0.6, 4.0], [0.6, 4.0]]
    out = clamped(x, act, direction, 2.0, torch.tensor([False, True]))
    assert torch.equal(out[0], x[0])
    torch.testing.assert_close(out[1] @ direction, torch.tensor([2.0, 2.0]))
    torch.testing.assert_close(out[1, 0], torch.tensor([1.0 + 1.4 * 0.6, 1.4 * 0.8]))  # x + (2 - 0.6) d


def test_greedy_rows_take_the_argmax_and_sampled_rows_the_noisy_argmax():
    logits = torch.tensor([[2.0, 1.0, 0.0], [2.0, 1.0, 0.0]])
    gumbel = torch.tensor([0.0, 3.0, 0.0])  # 2/1 + 0 < 1/1 + 3: the noise picks token 1
    assert next_tokens(logits, torch.tensor([False, True]), 1.0, gumbel).tolist() == [0, 1]
    assert next_tokens(logits, torch.tensor([False, True]), 0.25, gumbel).tolist() == [0, 0]  # 8 > 4 + 3


def test_gumbel_max_draws_follow_the_softmax():
    probs = torch.tensor([0.7, 0.2, 0.1])
    logits = probs.log().repeat(1, 1)  # [1, 3]
    g = torch.Generator().manual_seed(0)
    n = 4000
    draws = [int(next_tokens(logits, torch.tensor([True]), 1.0, -torch.log(-torch.log(torch.rand(3, generator=g))))[0])
             for _ in range(n)]
    freq = torch.bincount(torch.tensor(draws), minlength=3) / n
    assert torch.allclose(freq, probs, atol=4 * math.sqrt(0.25 / n))  # within 4 standard errors


def one_row(lm, prompt, direction, coefficient, sampled, n, temperature=1.0, seed=0) -> list[int]:
    """The slow twin: one continuation at a time, steering by a plain hook, the same noise stream."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.tensor([prompt])
    hooks = [(HOOK, lambda act, hook: act + coefficient * direction)]
    out = []
    for _ in range(n):
        logits = lm.logits(tokens, hooks)[0, -1]
        noise = -torch.log(-torch.log(torch.rand(logits.shape[-1], generator=g).clamp_(min=1e-20)))
        chosen = int((logits / temperature + noise).argmax() if sampled else logits.argmax())
        out.append(chosen)
        tokens = torch.cat([tokens, torch.tensor([[chosen]])], dim=1)
    return out


def test_the_four_rows_equal_one_row_at_a_time_and_zero_strength_changes_nothing(lm, direction):
    prompt = [lm.tokenizer.bos_token_id, *lm.tokenizer("To be, or not", add_special_tokens=False)["input_ids"]]
    strong = generate_steered(lm, prompt, Steering(HOOK, direction, "add", 40.0), 8, temperature=0.8, seed=3)
    assert strong.stopped == "length" and all(len(row) == 8 for row in strong.ids)
    for (side, sampling), row in zip(ROWS, strong.ids):
        coefficient = 40.0 if side == "steered" else 0.0
        assert row == one_row(lm, prompt, direction, coefficient, sampling == "sampled", 8, 0.8, 3), (side, sampling)
    by_row = dict(zip(ROWS, strong.ids))
    assert by_row["steered", "greedy"] != by_row["unsteered", "greedy"]

    zero = generate_steered(lm, prompt, Steering(HOOK, direction, "add", 0.0), 8, temperature=0.8, seed=3)
    by_row = dict(zip(ROWS, zero.ids))
    for sampling in ("greedy", "sampled"):
        assert by_row["steered", sampling] == by_row["unsteered", sampling]


def test_clamping_reads_the_feature_and_writes_the_difference(lm, direction):
    prompt = [lm.tokenizer.bos_token_id, *lm.tokenizer("To be", add_special_tokens=False)["input_ids"]]
    seen = []
    steering = Steering(HOOK, direction, "clamp", 5.0, activation=lambda x: seen.append(x.clone()) or x @ direction)
    clamp = generate_steered(lm, prompt, steering, 2)
    assert len(seen) == 2 and seen[0].shape == (4, len(prompt), 32)  # one read per forward, every row
    # clamping a linear feature to 5 is adding (5 - a(x)) d: at one token, a one-row forward agrees
    hooks = [(HOOK, lambda act, hook: act + (5.0 - act @ direction)[..., None] * direction)]
    assert clamp.ids[1][0] == int(lm.logits(torch.tensor([prompt]), hooks)[0, -1].argmax())
    assert clamp.ids[0][0] == int(lm.logits(torch.tensor([prompt]))[0, -1].argmax())  # unsteered: untouched


def test_generation_stops_when_the_time_runs_out_and_on_non_finite_logits(lm, direction):
    prompt = [lm.tokenizer.bos_token_id, 5, 6]
    out = generate_steered(lm, prompt, Steering(HOOK, direction, "add", 1.0), 30, timeout_s=0.0)
    assert out.stopped == "time" and [len(r) for r in out.ids] == [1, 1, 1, 1]  # at least one token
    with pytest.raises(ModelError, match="not finite at strength"):
        generate_steered(lm, prompt, Steering(HOOK, direction, "add", 3e38), 2)
    with pytest.raises(ValueError, match="no token"):
        generate_steered(lm, [], Steering(HOOK, direction, "add", 1.0), 2)
