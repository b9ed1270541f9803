"""GET /api/decompositions/{name} and /api/decompositions/{name}/components/{index}: a TMS 5-2
decomposition analyzed into the served store (conftest.short_decomposed), against the store's
documents and the decomposition itself."""

from __future__ import annotations

import pytest
import torch

from lm_saes.analysis.decomposition import toy_inputs
from lm_saes.spd import load_decomposition
from tests.server.served import LM_SPD, NAME, SHORT_SPD

C = 20  # examples/spd_tms_5-2.toml's subcomponents per matrix


def test_a_decomposition_is_listed_beside_the_dictionaries_with_its_modules(client, store, short_decomposed):
    listed = {d["name"]: d for d in client.get("/api/dictionaries").json()}
    spd, record = listed[SHORT_SPD], store.dictionary(SHORT_SPD)
    assert spd["kind"] == "decomposition" and spd["d_sae"] == 2 * C and spd["analyses"] == ["default"]
    assert [(m["name"], m["first"], m["C"], m["tied_to"]) for m in spd["modules"]] == \
        [("linear1", 0, C, None), ("linear2", C, C, "linear1")]
    for got, want in zip(spd["modules"], record["modules"]):
        assert got["live"] == want["live"] and got["metrics"] == want["metrics"] and "ci_l0" in got["metrics"]
    assert listed[NAME]["modules"] == []


def test_detail_lists_each_modules_components_densest_first_and_its_plane(client, store, short_decomposed):
    body = client.get(f"/api/decompositions/{SHORT_SPD}").json()
    run = store.analysis(SHORT_SPD)
    assert body["ci_threshold"] == run["summary"]["ci_threshold"] == 0.1
    assert body["analysis"]["n_tokens"] == 4000 and body["metrics"] == store.dictionary(SHORT_SPD)["metrics"]
    spd = load_decomposition(short_decomposed)
    for m, module in enumerate(body["modules"]):
        components = module["components"]
        assert sorted(c["index"] for c in components) == list(range(module["first"], module["first"] + C))
        densities = [c["density"] for c in components]
        assert densities == sorted(densities, reverse=True)
        assert sum(c["n_fired"] > 0 for c in components) == module["live"]
        for c in components:
            doc = store.feature(SHORT_SPD, c["index"])
            assert c["component"] == doc["component"] == c["index"] - module["first"] and doc["module"] == module["name"]
            assert (c["density"], c["u_norm"], c["v_norm"]) == (doc["density"], doc["u_norm"], doc["v_norm"])
        # the plane: the target's five feature directions in the 2-d hidden space and each subcomponent's
        W = spd.model.weight(module["name"])  # [d_in, d_out]: [5, 2] then [2, 5]
        target = W if m == 0 else W.T
        assert torch.tensor(module["plane"]["target"]).allclose(target, atol=1e-6)
        parts = spd.subcomponents(module["name"])
        for c, (direction, feature) in enumerate(zip(module["plane"]["components"], module["plane"]["feature"])):
            matrix = parts.matrices[c]  # [d_in, d_out], rank one
            along = matrix[feature] if m == 0 else matrix[:, feature]  # its direction for that feature
            assert torch.tensor(direction).allclose(along, atol=1e-6)
            weighs = parts.V[:, c].abs() if m == 0 else parts.U[c].abs()
            assert weighs[feature] == weighs.max()


def test_a_component_has_its_examples_norms_and_counted_coactivations(client, store, short_decomposed):
    detail = client.get(f"/api/decompositions/{SHORT_SPD}").json()
    index = detail["modules"][0]["components"][0]["index"]  # linear1's densest
    body = client.get(f"/api/decompositions/{SHORT_SPD}/components/{index}").json()
    doc = store.feature(SHORT_SPD, index)
    assert (body["module"], body["C"], body["first"]) == ("linear1", C, 0)
    assert (body["prev"], body["next"]) == (index - 1 if index else None, index + 1)
    assert body["top_contexts"] and body["top_contexts"][0]["inner"] == doc["top_contexts"][0]["inner"]
    assert body["top_contexts"][0]["input"] == doc["top_contexts"][0]["input"]
    assert body["histogram"] == doc["histogram"] and body["decoder_norm"] == pytest.approx(body["u_norm"] * body["v_norm"])

    # co-activations counted again from the causal importances on the analysis's 4000 inputs
    spd = load_decomposition(short_decomposed)
    ci = torch.cat([spd.causal_importances(toy_inputs(spd, 4000, 0))[m] for m in spd.modules], dim=-1)  # [4000, 40]
    fired = ci > 0.1
    together = (fired & fired[:, index:index + 1]).sum(0)  # [40]
    together[index] = 0
    expected = sorted(((int(n), j) for j, n in enumerate(together.tolist()) if n > 0), key=lambda t: (-t[0], t[1]))[:8]
    got = body["coactivations"]
    assert [(c["count"], c["index"]) for c in got] == expected and got
    n_i = int(fired[:, index].sum())
    assert n_i == doc["n_fired"]
    for c in got:
        n_j = int(fired[:, c["index"]].sum())
        assert c["p"] == pytest.approx(c["count"] / n_i) and c["jaccard"] == pytest.approx(c["count"] / (n_i + n_j - c["count"]))
        assert (c["module"], c["component"]) == (("linear1", c["index"]) if c["index"] < C else ("linear2", c["index"] - C))


def test_unknown_names_components_and_analyses_are_404s_that_say_what_exists(client, short_decomposed):
    missing = client.get("/api/decompositions/nope")
    assert missing.status_code == 404 and "no dictionary 'nope'" in missing.json()["detail"]
    assert SHORT_SPD in missing.json()["detail"]
    dictionary = client.get(f"/api/decompositions/{NAME}")
    assert dictionary.status_code == 404 and "not an SPD decomposition" in dictionary.json()["detail"]
    assert f"/dictionaries/{NAME}" in dictionary.json()["detail"]
    past = client.get(f"/api/decompositions/{SHORT_SPD}/components/{2 * C}")
    assert past.status_code == 404 and f"its components are 0-{2 * C - 1}" in past.json()["detail"]
    assert client.get(f"/api/decompositions/{SHORT_SPD}/components/-1").status_code == 422
    other = client.get(f"/api/decompositions/{SHORT_SPD}/components/0", params={"analysis": "other"})
    assert other.status_code == 404 and "complete analyses: default" in other.json()["detail"]
    unanalysed = client.get(f"/api/decompositions/{SHORT_SPD}", params={"analysis": "other"}).json()
    assert unanalysed["analysis"] is None
    assert unanalysed["ci_threshold"] == 0.1  # the decomposition's own, before any analysis


def test_live_inference_gives_each_tokens_important_subcomponents_of_a_matrix(client, lm_decomposed):
    from lm_saes.config import ModelConfig
    from lm_saes.data.framing import context_frame
    from lm_saes.models.backend import load_tokenizer

    module = "transformer.h.0.mlp.c_fc"  # the first matrix: the default
    text = "the king and the queen"
    body = client.post(f"/api/decompositions/{LM_SPD}/infer", json={"text": text, "top": 4}).json()
    spd = load_decomposition(lm_decomposed)
    tok = load_tokenizer(ModelConfig.model_validate(spd.record["target"]["model"]))
    ids = tok(text, add_special_tokens=False)["input_ids"]
    frame = context_frame(tok)
    ci = spd.causal_importances(torch.tensor([[*frame.start, *ids, *frame.end]]))[module][0, len(frame.start):][:len(ids)]
    assert body["token_ids"] == ids and len(body["tokens"]) == len(ids) and not body["truncated"]
    assert (body["module"], body["first"], body["C"], body["ci_threshold"]) == (module, 0, 4, 0.1)
    assert body["l0"] == (ci > 0.1).sum(-1).tolist() and sum(body["l0"]) > 0
    for row, want in zip(body["components"], ci):
        above = sorted(((float(v), c) for c, v in enumerate(want.tolist()) if v > 0.1), key=lambda t: (-t[0], t[1]))
        assert [(r["component"], r["index"]) for r in row] == [(c, c) for _, c in above]
        assert [r["ci"] for r in row] == pytest.approx([v for v, _ in above], abs=1e-5)
    other = client.post(f"/api/decompositions/{LM_SPD}/infer", json={"text": text, "module": "transformer.h.1.attn.c_proj"})
    assert other.json()["first"] == 4 and len(other.json()["l0"]) == len(ids)  # the second matrix's features follow


def test_live_inference_refuses_unknown_matrices_toys_and_dictionaries(client, lm_decomposed, short_decomposed):
    bad = client.post(f"/api/decompositions/{LM_SPD}/infer", json={"text": "a", "module": "nope"})
    assert bad.status_code == 422 and "transformer.h.0.mlp.c_fc, transformer.h.1.attn.c_proj" in bad.json()["detail"]
    toy = client.post(f"/api/decompositions/{SHORT_SPD}/infer", json={"text": "a"})
    assert toy.status_code == 409 and "only a language model's decomposition runs on text" in toy.json()["detail"]
    assert client.post(f"/api/decompositions/{NAME}/infer", json={"text": "a"}).status_code == 404
    assert client.post(f"/api/decompositions/{LM_SPD}/infer", json={"text": ""}).status_code == 422
