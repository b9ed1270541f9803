"""GET /api/dictionaries and /api/dictionaries/{name}: the records and analysis summaries as stored."""

from __future__ import annotations

import pytest

from tests.server.served import BAD_HOOK, BARE, D_SAE, LM_SPD, NAME, SHORT_SPD, SPD, SWEPT_MEMBER


def test_list_shows_every_dictionary_with_its_analyses(client, store):
    listed = {d["name"]: d for d in client.get("/api/dictionaries").json()}
    # the sweep's member once conftest.swept ran, the decompositions once conftest.(short_)decomposed did
    assert set(listed) - {SWEPT_MEMBER, SPD, SHORT_SPD, LM_SPD} == {NAME, BARE, BAD_HOOK}
    record = store.dictionary(NAME)
    assert listed[NAME] == {
        "name": NAME, "kind": "topk", "d_sae": D_SAE, "d_in": record["d_in"], "analyses": ["default"],
        "metrics": record["metrics"], "source": record["source"], "modules": [],
    }
    assert listed[BARE]["analyses"] == [] and listed[BARE]["source"] == {}


def test_detail_has_the_record_and_the_analysis_summary(client, store):
    body = client.get(f"/api/dictionaries/{NAME}").json()
    record, run = store.dictionary(NAME), store.analysis(NAME)
    for key in ("kind", "d_sae", "d_in", "d_out", "transcoder", "config", "source", "metrics"):
        assert body[key] == record[key], key
    summary = run["summary"]
    assert body["analysis"] == {
        "name": "default", "n_tokens": summary["n_tokens"], "n_contexts": summary["n_contexts"],
        "alive_fraction": pytest.approx(summary["alive_fraction"]),
        "dead_fraction": pytest.approx(summary["dead_fraction"]),
        "density_histogram": summary["density_histogram"], "created_at": run["created_at"],
    }
    assert sum(body["analysis"]["density_histogram"]["counts"]) + summary["density_histogram"]["dead"] == D_SAE
    [lexical] = body["interpretations"]  # conftest.stored ran the offline default
    assert lexical["explainer"] == "lexical" and lexical["kind"] == "lexical"
    scores = [d["explanation"]["scores"]["simulation"] for d in store.features(NAME, sort="simulation", limit=D_SAE)]
    assert lexical["means"]["simulation"]["n"] == len(scores) == lexical["n_scored"]
    assert lexical["means"]["simulation"]["mean"] == pytest.approx(sum(scores) / len(scores))
    low, high = lexical["means"]["simulation"]["low"], lexical["means"]["simulation"]["high"]
    assert low < lexical["means"]["simulation"]["mean"] < high


def test_detail_without_the_analysis_is_null_and_unknown_is_404(client):
    other = client.get(f"/api/dictionaries/{NAME}", params={"analysis": "other"}).json()
    assert other["analysis"] is None and other["interpretations"] == []
    assert client.get(f"/api/dictionaries/{BARE}").json()["analysis"] is None
    response = client.get("/api/dictionaries/nope")
    assert response.status_code == 404
    assert "no dictionary 'nope'" in response.json()["detail"] and NAME in response.json()["detail"]
