"""Feature pages, one feature, a random one and token search, against the store's documents."""

from __future__ import annotations

import json

import pytest

from lm_saes.store.documents import token_key
from lm_saes.store.summaries import summary_line
from tests.server.served import BARE, D_SAE, NAME

SUMMARY_KEYS = ("index", "density", "max_activation", "mean_activation", "n_fired")


def test_a_page_matches_the_store_sorted_filtered_and_counted(client, store):
    body = client.get(f"/api/dictionaries/{NAME}/features",
                      params={"sort": "density", "order": "desc", "limit": 7, "skip": 2}).json()
    assert body["total"] == D_SAE
    expected = store.features(NAME, sort="density", descending=True, skip=2, limit=7)
    assert [item["index"] for item in body["items"]] == [doc["index"] for doc in expected]
    for item, doc in zip(body["items"], expected):
        assert item == {**{k: doc[k] for k in SUMMARY_KEYS}, "interpretation": None, "explanation": explanation(doc),
                        "summary": summary_line(doc)}
    densities = [item["density"] for item in body["items"]]
    assert densities == sorted(densities, reverse=True)

    default = client.get(f"/api/dictionaries/{NAME}/features").json()
    assert [item["index"] for item in default["items"]] == list(range(min(50, D_SAE)))
    cut = sorted(doc["density"] for doc in store.features(NAME, limit=D_SAE))[D_SAE // 2]
    filtered = client.get(f"/api/dictionaries/{NAME}/features", params={"min_density": cut, "limit": 500}).json()
    assert filtered["total"] == store.count_features(NAME, min_density=cut) == len(filtered["items"])
    assert all(item["density"] >= cut for item in filtered["items"])


def test_interpretation_search_filters_the_page(client, store):
    store.set_interpretation(NAME, 3, "mentions of kings and crowns")
    try:
        body = client.get(f"/api/dictionaries/{NAME}/features", params={"search": "kings"}).json()
        assert body["total"] == 1 and body["items"][0]["index"] == 3
        assert body["items"][0]["interpretation"] == "mentions of kings and crowns"
    finally:
        store.set_interpretation(NAME, 3, "")


def explanation(doc: dict) -> dict | None:
    """The API's form of a stored summary's explanation: every score named, absent ones null."""
    if "explanation" not in doc:
        return None
    shown = doc["explanation"]
    return {**shown, "scores": {s: shown["scores"].get(s) for s in ("simulation", "detection", "fuzzing")}}


@pytest.mark.parametrize("params", [
    {"sort": "name"}, {"order": "up"}, {"limit": 0}, {"limit": 501}, {"skip": -1}, {"min_density": 2},
])
def test_bad_page_parameters_are_422(client, params):
    response = client.get(f"/api/dictionaries/{NAME}/features", params=params)
    assert response.status_code == 422 and "detail" in response.json()


def test_one_feature_is_the_stored_document_with_neighbours(client, store):
    best = store.features(NAME, sort="density", descending=True, limit=1)[0]["index"]
    doc = store.feature(NAME, best)
    body = client.get(f"/api/dictionaries/{NAME}/features/{best}").json()
    for key in (*SUMMARY_KEYS, "n_contexts", "decoder_norm", "top_contexts", "quantiles", "histogram", "logits"):
        assert body[key] == doc[key], key
    assert body["top_contexts"] and body["quantiles"] and body["neighbors"]
    assert all(len(c["token_ids"]) == len(c["tokens"]) for c in body["top_contexts"])
    assert body["summary"] == summary_line(doc) and body["summary"]["text"]
    assert [{k: n[k] for k in ("index", "cosine")} for n in body["neighbors"]] == doc["neighbors"]
    for n in body["neighbors"]:  # each neighbour with its own summary line (None if it never fired)
        assert n["summary"] == summary_line(store.feature(NAME, n["index"]))
    assert body["interpretation"] is None
    assert "analysis_id" not in body and "peak_tokens" not in body
    assert (body["prev"], body["next"]) == (best - 1 if best else None, best + 1 if best < D_SAE - 1 else None)
    first, last = (client.get(f"/api/dictionaries/{NAME}/features/{i}").json() for i in (0, D_SAE - 1))
    assert (first["prev"], first["next"]) == (None, 1)
    assert (last["prev"], last["next"]) == (D_SAE - 2, None)


def test_missing_features_are_404_and_negative_422(client):
    response = client.get(f"/api/dictionaries/{NAME}/features/{D_SAE}")
    assert response.status_code == 404 and f"its features are 0-{D_SAE - 1}" in response.json()["detail"]
    assert client.get("/api/dictionaries/nope/features/0").status_code == 404
    assert client.get(f"/api/dictionaries/{BARE}/features/0").status_code == 404
    assert client.get(f"/api/dictionaries/{NAME}/features/0", params={"analysis": "other"}).status_code == 404
    assert client.get(f"/api/dictionaries/{NAME}/features/-1").status_code == 422
    response = client.get(f"/api/dictionaries/{BARE}/features")
    assert response.status_code == 404 and "no analysis 'default'" in response.json()["detail"]


def test_random_draws_features_that_fire(client, store):
    alive = {doc["index"] for doc in store.features(NAME, limit=D_SAE) if doc["density"] > 0}
    drawn = {client.get(f"/api/dictionaries/{NAME}/random").json()["index"] for _ in range(20)}
    assert drawn <= alive and len(drawn) > 1
    assert client.get("/api/dictionaries/nope/random").status_code == 404
    assert client.get(f"/api/dictionaries/{BARE}/random").status_code == 404


def test_token_search_finds_the_features_peaking_on_a_token(client, store):
    docs = [store.feature(NAME, i) for i in range(D_SAE)]
    peaks = {d["index"]: [token_key(e["tokens"][e["peak"] - e["start"]]) for e in d["top_contexts"]] for d in docs}
    token = max((t for p in peaks.values() for t in p if t), key=lambda t: sum(t in p for p in peaks.values()))
    expected = {i: p.count(token) for i, p in peaks.items() if token in p}

    body = client.get(f"/api/dictionaries/{NAME}/search", params={"q": f"  {token.upper()} ", "limit": 500}).json()
    assert {item["index"]: item["matches"] for item in body["items"]} == expected
    matches = [item["matches"] for item in body["items"]]
    assert matches == sorted(matches, reverse=True)
    by_index = {d["index"]: d for d in docs}
    for item in body["items"]:
        assert item["density"] == by_index[item["index"]]["density"]
        assert item["max_activation"] == by_index[item["index"]]["max_activation"]
        assert item["summary"] == summary_line(by_index[item["index"]]) and item["summary"]["text"]
    limited = client.get(f"/api/dictionaries/{NAME}/search", params={"q": token, "limit": 1}).json()
    assert limited["items"] == body["items"][:1]
    assert client.get(f"/api/dictionaries/{NAME}/search", params={"q": "zzzqqq"}).json() == {"items": []}


@pytest.mark.parametrize("q", ["", "   "])
def test_an_empty_token_search_is_422(client, q):
    assert client.get(f"/api/dictionaries/{NAME}/search", params={"q": q}).status_code == 422
    assert client.get(f"/api/dictionaries/{NAME}/search").status_code == 422


def test_token_search_of_an_unknown_dictionary_is_404(client):
    assert client.get("/api/dictionaries/nope/search", params={"q": "the"}).status_code == 404


def test_features_sort_by_a_score_and_search_the_explanations(client, store):
    scored = [d for d in store.features(NAME, limit=D_SAE) if "detection" in d.get("explanation", {}).get("scores", {})]
    assert scored, "conftest.stored interprets the dictionary"
    body = client.get(f"/api/dictionaries/{NAME}/features", params={"sort": "detection", "order": "desc",
                                                                    "limit": 500}).json()
    want = sorted(scored, key=lambda d: (-d["explanation"]["scores"]["detection"], d["index"]))
    assert [item["index"] for item in body["items"]] == [d["index"] for d in want] and body["total"] == len(scored)
    assert body["items"][0]["explanation"]["kind"] == "lexical"
    token = scored[0]["explanation"]["text"].split('"')[1]  # its first characteristic token
    found = client.get(f"/api/dictionaries/{NAME}/features", params={"search": token, "limit": 500}).json()
    assert scored[0]["index"] in [item["index"] for item in found["items"]]
    assert all(token in (item["explanation"] or {}).get("text", "").lower() for item in found["items"])


def test_a_features_explanation_records_hold_what_the_explainer_saw(client, store):
    index = store.features(NAME, sort="simulation", descending=True, limit=1)[0]["index"]
    records = client.get(f"/api/dictionaries/{NAME}/features/{index}/explanations").json()
    assert [r["explainer"] for r in records] == ["lexical"]
    detail = client.get(f"/api/dictionaries/{NAME}/features/{index}").json()
    assert detail["explanation"]["text"] == records[0]["explanation"]
    assert records[0]["scores"] == detail["explanation"]["scores"] and records[0]["requests"] == []
    assert json.dumps(records[0]["tokens"][0]["token"], ensure_ascii=False) in records[0]["explanation"]
    unexplained = next(d["index"] for d in store.features(NAME, limit=D_SAE) if d["density"] == 0) \
        if any(d["density"] == 0 for d in store.features(NAME, limit=D_SAE)) else D_SAE + 5
    assert client.get(f"/api/dictionaries/{NAME}/features/{unexplained}/explanations").json() == []
    for bad in ("-1", str(2**63), "x"):
        assert client.get(f"/api/dictionaries/{NAME}/features/{bad}/explanations").status_code == 422
    assert client.get(f"/api/dictionaries/{BARE}/features/0/explanations").status_code == 404
