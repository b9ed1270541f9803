"""POST /api/dictionaries/{name}/features/{index}/steer: continuations with the feature's decoder
direction written into the real model, bounded in length, strength and time; bad input is 4xx."""

from __future__ import annotations

import pytest
import torch

from lm_saes.config import ModelConfig
from lm_saes.dictionaries import Dictionary
from lm_saes.models.backend import load_language_model
from lm_saes.server.schemas import MAX_NEW_TOKENS, MAX_STEER_SECONDS, MAX_STRENGTH
from tests.server.served import BARE, D_SAE, HOOK, NAME

URL = f"/api/dictionaries/{NAME}/features/3/steer"
PROMPT = "To be, or not to be"


def steer(client, **body):
    return client.post(URL, json={"prompt": PROMPT, "strength": 0.0, "max_new_tokens": 6, **body})


def test_zero_strength_changes_nothing_and_a_strong_one_changes_the_continuation(client, stored):
    zero = steer(client, strength=0.0).json()
    assert zero["hook"] == HOOK and zero["stopped"] == "length" and zero["prompt_truncated"] is False
    for sampling in ("greedy", "sampled"):
        assert zero["steered"][sampling] == zero["unsteered"][sampling]
        assert len(zero["steered"][sampling]["token_ids"]) == 6
    strong = steer(client, strength=60.0).json()
    assert strong["unsteered"] == zero["unsteered"]  # the same seed: the same unsteered samples
    assert strong["steered"]["greedy"]["token_ids"] != strong["unsteered"]["greedy"]["token_ids"]

    # the steered greedy continuation is the model's own greedy loop with 60 * W_dec[3] added at the hook
    lm = load_language_model(ModelConfig(name=str(stored.model_dir), device="cpu"))
    direction = Dictionary.from_pretrained(stored.dictionary_dir).W_dec[3].detach()
    tokens = torch.tensor([[lm.tokenizer.bos_token_id, *lm.tokenizer(PROMPT, add_special_tokens=False)["input_ids"]]])
    for _ in range(6):
        logits = lm.logits(tokens, [(HOOK, lambda act, hook: act + 60.0 * direction)])
        tokens = torch.cat([tokens, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert strong["steered"]["greedy"]["token_ids"] == tokens[0, -6:].tolist()
    assert strong["steered"]["greedy"]["text"] == "".join(strong["steered"]["greedy"]["tokens"])


def test_clamping_runs_and_says_so(client):
    body = steer(client, mode="clamp", strength=5.0).json()
    assert body["mode"] == "clamp" and body["strength"] == 5.0
    assert len(body["steered"]["sampled"]["token_ids"]) == 6


def test_generation_stops_at_the_time_limit(client):
    body = steer(client, strength=1.0, max_new_tokens=40, timeout_s=1e-6).json()
    assert body["stopped"] == "time"
    assert all(len(body[side][s]["token_ids"]) == 1 for side in ("steered", "unsteered") for s in ("greedy", "sampled"))


def test_more_new_tokens_than_the_model_context_holds_is_422(client):
    response = steer(client, max_new_tokens=MAX_NEW_TOKENS)  # the test model's context is 64 tokens, BOS included
    assert response.status_code == 422 and "no room for a prompt" in response.json()["detail"]


def test_a_long_prompt_keeps_its_end_and_leaves_room_for_the_continuation(client):
    body = steer(client, prompt="Once upon a time. " * 40 + "The end", max_new_tokens=10).json()
    assert body["prompt_truncated"] is True and "".join(body["prompt_tokens"]).endswith("time. The end")
    assert len(body["steered"]["greedy"]["token_ids"]) == 10


@pytest.mark.parametrize("change", [
    {"max_new_tokens": 0}, {"max_new_tokens": MAX_NEW_TOKENS + 1}, {"strength": MAX_STRENGTH * 1.01},
    {"strength": -MAX_STRENGTH * 1.01}, {"timeout_s": 0}, {"timeout_s": MAX_STEER_SECONDS + 1},
    {"temperature": 0}, {"mode": "multiply"}, {"prompt": ""}, {"prompt": "x" * 2001}, {"strength": None},
    {"extra": 1}, {"hook": ""},
])
def test_out_of_bounds_values_are_422(client, change):
    response = steer(client, **change)
    assert response.status_code == 422 and "detail" in response.json(), response.text


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_strengths_are_422(client, number):
    body = f'{{"prompt": "hi", "strength": {number}}}'.encode()
    response = client.post(URL, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422 and "finite" in response.text


def test_an_unknown_or_unfit_hook_is_422_naming_it(client):
    response = steer(client, hook="blocks.1.hook_resid_pots")
    assert response.status_code == 422 and "'blocks.1.hook_resid_pots' is not a hook point" in response.json()["detail"]
    assert "did you mean blocks.1.hook_resid_post" in response.json()["detail"]
    response = steer(client, hook="blocks.0.attn.hook_pattern")  # [batch, head, q, k]: nothing to add a direction to
    assert response.status_code == 422 and "blocks.0.attn.hook_pattern" in response.json()["detail"]
    assert steer(client, hook="blocks.2.hook_resid_post", strength=30.0).json()["hook"] == "blocks.2.hook_resid_post"


def test_unknown_features_and_dictionaries_are_404_and_unrunnable_ones_409(client):
    response = client.post(f"/api/dictionaries/{NAME}/features/{D_SAE}/steer", json={"prompt": "hi", "strength": 1})
    assert response.status_code == 404 and f"0-{D_SAE - 1}" in response.json()["detail"]
    assert client.post("/api/dictionaries/nope/features/0/steer", json={"prompt": "hi", "strength": 1}).status_code == 404
    assert client.post(f"/api/dictionaries/{BARE}/features/0/steer", json={"prompt": "hi", "strength": 1}).status_code == 409
