"""POST /api/dictionaries/{name}/infer: per-token features equal to encoding the model's
activations with the dictionary directly."""

from __future__ import annotations

import pytest
import torch

from lm_saes.config import ModelConfig
from lm_saes.dictionaries import Dictionary
from lm_saes.models.backend import load_language_model
from tests.server.served import BAD_HOOK, BARE, D_SAE, HOOK, NAME

TEXT = "To be, or not to be, that is the question."


def test_infer_matches_the_dictionary_on_the_model_activations(client, stored):
    top = 3
    body = client.post(f"/api/dictionaries/{NAME}/infer", json={"text": TEXT, "top": top}).json()

    lm = load_language_model(ModelConfig(name=str(stored.model_dir), device="cpu"))
    ids = lm.tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    tokens = torch.tensor([[lm.tokenizer.bos_token_id, *ids]])  # [1, 1 + n]
    x = lm.run_to_hooks(tokens, [HOOK], out_dtype=torch.float32)[HOOK][0, 1:]  # [n, d_in]
    with torch.no_grad():
        acts = Dictionary.from_pretrained(stored.dictionary_dir).encode(x)  # [n, d_sae]

    assert body["tokens"] == [lm.tokenizer.decode([i]) for i in ids] and body["token_ids"] == ids
    assert body["truncated"] is False and body["feature"] is None and body["feature_acts"] is None
    assert len(body["features"]) == len(ids)
    for position, row in enumerate(body["features"]):
        fired = acts[position]
        expected = sorted(((float(v), int(i)) for i, v in enumerate(fired) if v > 0), reverse=True)[:top]
        assert [f["index"] for f in row] == [i for _, i in expected]
        assert [f["act"] for f in row] == pytest.approx([v for v, _ in expected], rel=1e-5, abs=1e-6)
    assert any(body["features"])


def test_one_features_activation_at_every_token_comes_from_the_same_run(client, store):
    top = client.post(f"/api/dictionaries/{NAME}/infer", json={"text": TEXT, "top": 3}).json()
    feature = top["features"][2][0]["index"]  # the strongest at the third token
    body = client.post(f"/api/dictionaries/{NAME}/infer", json={"text": TEXT, "top": 3, "feature": feature}).json()
    assert body["feature"] == feature and len(body["feature_acts"]) == len(body["tokens"])
    assert body["feature_acts"][2] == top["features"][2][0]["act"]
    for row, act in zip(body["features"], body["feature_acts"]):  # where it is among the top 3, the same value
        assert [f["act"] for f in row if f["index"] == feature] in ([], [act])
    listed = sorted({f["index"] for row in body["features"] for f in row} | {feature})
    summaries = {line["index"]: line for line in body["summaries"]}
    assert sorted(summaries) == [i for i in listed if store.feature(NAME, i)["density"] > 0]
    assert all(line["text"] for line in summaries.values())


def test_a_feature_out_of_range_is_422(client):
    response = client.post(f"/api/dictionaries/{NAME}/infer", json={"text": TEXT, "feature": D_SAE})
    assert response.status_code == 422 and f"0-{D_SAE - 1}" in response.json()["detail"]


def test_infer_cuts_a_long_text_to_the_model_context(client):
    body = client.post(f"/api/dictionaries/{NAME}/infer", json={"text": TEXT * 30}).json()
    assert body["truncated"] is True and 0 < len(body["tokens"]) < 64 and len(body["features"]) == len(body["tokens"])


@pytest.mark.parametrize("payload", [{"text": ""}, {"text": "x" * 2001}, {"text": "hi", "top": 0}, {}, {"txt": "hi"}])
def test_bad_bodies_are_422(client, payload):
    assert client.post(f"/api/dictionaries/{NAME}/infer", json=payload).status_code == 422


def test_dictionaries_that_cannot_run_are_404_or_409(client):
    assert client.post("/api/dictionaries/nope/infer", json={"text": "hi"}).status_code == 404
    response = client.post(f"/api/dictionaries/{BARE}/infer", json={"text": "hi"})
    assert response.status_code == 409 and "no source model" in response.json()["detail"]
    response = client.post(f"/api/dictionaries/{BAD_HOOK}/infer", json={"text": "hi"})
    assert response.status_code == 409 and "blocks.9.hook_nowhere" in response.json()["detail"]


def test_inference_runs_from_any_working_directory(client, store, stored, tmp_path, monkeypatch):
    """A record as analyze writes it now (the model's absolute path) and one written before
    (`source.model = "model0/tiny"`, relative to where the analysis ran: a folder above the
    dictionary's) both run from an unrelated working directory, without trying the hub."""
    monkeypatch.chdir(tmp_path)
    assert client.post(f"/api/dictionaries/{NAME}/infer", json={"text": TEXT}).status_code == 200
    relative = stored.model_dir.relative_to(stored.model_dir.parents[1])  # model0/tiny
    assert stored.dictionary_dir.parents[1] == stored.model_dir.parents[1]  # both under pytest's tmp root
    record = store.dictionary(NAME)
    store.upsert_dictionary("legacy", {**record, "name": "legacy", "source": {**record["source"], "model": str(relative)}})
    try:
        response = client.post("/api/dictionaries/legacy/infer", json={"text": TEXT})
        assert response.status_code == 200, response.text
    finally:
        store.delete_dictionary("legacy")


def test_a_missing_model_is_409_naming_no_path(client, store, stored):
    record = store.dictionary(NAME)
    gone = stored.model_dir.parent / "moved-away"
    store.upsert_dictionary("moved", {**record, "name": "moved", "source": {**record["source"], "model": str(gone)}})
    try:
        response = client.post("/api/dictionaries/moved/infer", json={"text": TEXT})
        assert response.status_code == 409 and "cannot load its model 'moved-away'" in response.json()["detail"]
        assert str(stored.model_dir.parent) not in response.text
    finally:
        store.delete_dictionary("moved")
