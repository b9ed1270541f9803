"""`analyze_features` on a real 2d cache and trained dictionary, against brute force.

The brute force (``truth`` in conftest.py) encodes every context at once; here each statistic is
recomputed from it with a direct formula (sort, count, matrix product) and compared document by
document with what the streaming passes produced.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from lm_saes.activations.generate import generate
from lm_saes.activations.reader import open_cache
from lm_saes.analysis import analyze, analyze_features
from lm_saes.analysis.bands import priorities
from lm_saes.config import AnalyzeConfig, GenerateConfig, load_config
from lm_saes.data.pieces import TokenPieces
from lm_saes.dictionaries import Dictionary
from lm_saes.errors import CacheError
from lm_saes.evaluation.metrics import FeatureFiring

D_SAE, N_CONTEXTS = 96, 120  # as built in conftest.py

SETTINGS = dict(top_k=6, window=3, n_bands=4, per_band=3, histogram_bins=16, n_logits=5, n_neighbors=4,
                batch_size=7, device="cpu", seed=3, progress=False)


def run(cache_dir, dictionary_dir, tokenizer, W_U, **overrides):
    cfg = AnalyzeConfig(dictionary=dictionary_dir, cache=cache_dir, **{**SETTINGS, **overrides})
    summary, docs = analyze_features(cfg, Dictionary.from_pretrained(dictionary_dir), open_cache(cache_dir),
                                     tokenizer, W_U)
    return summary, list(docs)


@pytest.fixture(scope="module")
def result(cache_dir, dictionary_dir, tokenizer, W_U):
    return run(cache_dir, dictionary_dir, tokenizer, W_U)


def expected_example(truth, tokenizer, c: int, f: int, window: int) -> dict:
    """Context c's example for feature f, from the brute force."""
    values, peaks = truth.acts[c].max(dim=0)  # over positions: [d_sae]
    peak = int(peaks[f])
    lo, hi = max(0, peak - window), min(truth.tokens.shape[1] - 1, peak + window)
    shown = [p for p in range(lo, hi + 1) if truth.valid[c, p]]
    return {
        "context_id": int(truth.context_ids[c]), "peak": peak, "max": float(values[f]), "start": shown[0],
        "tokens": [tokenizer.decode([int(truth.tokens[c, p])]) for p in shown],
        "token_ids": [int(truth.tokens[c, p]) for p in shown],
        "acts": [float(truth.acts[c, p, f]) for p in shown],
    }


def assert_same(actual, expected, rel=1e-5, abs=1e-6):
    """Equal structures; floats equal up to rounding of a differently batched matmul."""
    if isinstance(expected, dict):
        assert actual.keys() == expected.keys()
        for key in expected:
            assert_same(actual[key], expected[key], rel, abs)
    elif isinstance(expected, list):
        assert len(actual) == len(expected)
        for a, e in zip(actual, expected):
            assert_same(a, e, rel, abs)
    elif isinstance(expected, float):
        assert actual == pytest.approx(expected, rel=rel, abs=abs)
    else:
        assert actual == expected


def test_counts_density_max_and_mean_equal_brute_force(result, truth):
    summary, docs = result
    fires = truth.acts > 0
    n_fired = fires.sum((0, 1))
    n_tokens = int(truth.analyzed.sum())
    assert summary["n_tokens"] == n_tokens and summary["n_contexts"] == N_CONTEXTS
    assert n_tokens < truth.valid.sum() < truth.valid.numel()  # BOS left out, padding present
    assert [d["index"] for d in docs] == list(range(D_SAE))
    for f, doc in enumerate(docs):
        assert doc["n_fired"] == int(n_fired[f])
        assert doc["n_contexts"] == int(fires[:, :, f].any(1).sum())
        assert doc["density"] == pytest.approx(int(n_fired[f]) / n_tokens)
        assert doc["max_activation"] == pytest.approx(float(truth.acts[:, :, f].max()), rel=1e-5)
        mean = float(truth.acts[:, :, f].sum() / n_fired[f]) if n_fired[f] else 0.0
        assert doc["mean_activation"] == pytest.approx(mean, rel=1e-5)
    assert sum(d["n_fired"] > 0 for d in docs) > D_SAE // 2


def test_top_contexts_are_exactly_the_brute_force_top_contexts(result, truth, tokenizer):
    _, docs = result
    maxima = truth.acts.max(dim=1).values  # [n, d_sae]
    for f, doc in enumerate(docs):
        ranked = sorted((c for c in range(N_CONTEXTS) if maxima[c, f] > 0), key=lambda c: (-float(maxima[c, f]), c))
        expected = [expected_example(truth, tokenizer, c, f, SETTINGS["window"]) for c in ranked[: SETTINGS["top_k"]]]
        assert_same(doc["top_contexts"], expected)
        for example in doc["top_contexts"]:
            assert example["tokens"][example["peak"] - example["start"]]
            assert example["acts"][example["peak"] - example["start"]] == example["max"]


def test_padding_is_cut_from_windows(result, truth):
    _, docs = result
    lengths = dict(zip(truth.context_ids.tolist(), truth.valid.sum(1).tolist()))
    padded = {c for c, n in lengths.items() if n < truth.valid.shape[1]}
    seen = [e for d in docs for e in d["top_contexts"] if e["context_id"] in padded]
    assert seen, "no padded context among the top contexts; make the test documents shorter"
    for example in seen:
        assert example["start"] + len(example["tokens"]) <= lengths[example["context_id"]]


def test_band_samples_are_uniform_draws_within_their_bands(result, truth, tokenizer):
    _, docs = result
    n_bands, per_band = SETTINGS["n_bands"], SETTINGS["per_band"]
    maxima = truth.acts.max(dim=1).values  # [n, d_sae]
    for f, doc in enumerate(docs):
        if doc["n_fired"] == 0:
            assert doc["quantiles"] == [] and doc["top_contexts"] == []
            continue
        top = doc["max_activation"]
        assert [q["band"] for q in doc["quantiles"]] == list(range(n_bands))
        for q in doc["quantiles"]:
            b = q["band"]
            assert q["low"] == pytest.approx(b * top / n_bands) and q["high"] == pytest.approx((b + 1) * top / n_bands)
            members = [c for c in range(N_CONTEXTS)
                       if maxima[c, f] > 0 and min(math.ceil(float(maxima[c, f]) / top * n_bands), n_bands) - 1 == b]
            assert q["n_contexts"] == len(members)
            assert len(q["examples"]) == min(per_band, len(members))
            for example in q["examples"]:
                assert q["low"] < example["max"] <= q["high"] * (1 + 1e-6)
            # The sample is the members of lowest random priority (a uniform draw; see test_bands).
            keys = priorities(SETTINGS["seed"], truth.context_ids[members], torch.full((len(members),), f)).tolist()
            chosen = [c for _, c in sorted(zip(keys, members))[:per_band]]
            assert_same(q["examples"], [expected_example(truth, tokenizer, c, f, SETTINGS["window"]) for c in chosen])
    assert any(doc["quantiles"][0]["examples"] for doc in docs if doc["quantiles"])


def test_histograms_count_every_firing_token_in_power_of_two_bins(result, truth):
    _, docs = result
    bins = SETTINGS["histogram_bins"]
    for f, doc in enumerate(docs):
        histogram = doc["histogram"]
        assert sum(histogram["counts"]) == doc["n_fired"]
        if doc["n_fired"] == 0:
            assert histogram == {"edges": [], "counts": []}
            continue
        values = truth.acts[:, :, f][truth.acts[:, :, f] > 0].double()
        upper = 2.0 ** math.frexp(float(values.max()))[1]  # smallest power of two above the max
        direct = torch.bincount((values / upper * bins).floor().long(), minlength=bins).tolist()
        n = len(histogram["counts"])
        assert bins // 2 + 1 <= n <= bins and histogram["counts"] == direct[:n] and sum(direct[n:]) == 0
        assert histogram["edges"] == pytest.approx([j * upper / bins for j in range(n + 1)])
        assert histogram["edges"][-2] <= doc["max_activation"] < histogram["edges"][-1]


def test_logit_effects_equal_a_direct_product(result, dictionary_dir, W_U, tokenizer):
    _, docs = result
    effects = Dictionary.from_pretrained(dictionary_dir).W_dec.detach() @ W_U  # [d_sae, vocab]
    n = SETTINGS["n_logits"]
    for f, doc in enumerate(docs):
        for sign, side in ((1, "positive"), (-1, "negative")):
            top = (sign * effects[f]).topk(n)
            expected = [{"token": alone(tokenizer, i), "token_id": i, "value": sign * v}
                        for v, i in zip(top.values.tolist(), top.indices.tolist())]
            assert_same(doc["logits"][side], expected)


def alone(tokenizer, token_id: int) -> str:
    """A token decoded on its own; a partial character (decoded as U+FFFD) as its bytes, <0xNN>."""
    text = tokenizer.decode([token_id])
    if "\ufffd" not in text:
        return text
    return "".join(f"<0x{b:02X}>" for b in TokenPieces(tokenizer).piece(token_id))


def test_neighbors_equal_brute_force_cosine(result, dictionary_dir):
    _, docs = result
    W_dec = Dictionary.from_pretrained(dictionary_dir).W_dec.detach()
    unit = W_dec / W_dec.norm(dim=1, keepdim=True)
    cosine = (unit @ unit.T).fill_diagonal_(-2)
    for f, doc in enumerate(docs):
        top = cosine[f].topk(SETTINGS["n_neighbors"])
        expected = [{"index": i, "cosine": v} for v, i in zip(top.values.tolist(), top.indices.tolist())]
        assert_same(doc["neighbors"], expected, rel=1e-4)
        assert doc["decoder_norm"] == pytest.approx(float(W_dec[f].norm()))


def test_results_do_not_depend_on_the_batch_size(result, cache_dir, dictionary_dir, tokenizer, W_U):
    """Memory is one batch plus fixed-size per-feature state: the batch size changes nothing else."""
    _, one = run(cache_dir, dictionary_dir, tokenizer, W_U, batch_size=1)
    _, all_at_once = run(cache_dir, dictionary_dir, tokenizer, W_U, batch_size=4 * N_CONTEXTS)
    assert_same(one, result[1])
    assert_same(all_at_once, result[1])


@pytest.mark.parametrize("keep_codes_gb", [0, 1e-6], ids=["never", "over-budget"])
def test_encoding_again_for_the_bands_gives_the_replayed_results(result, cache_dir, dictionary_dir, tokenizer, W_U,
                                                                  keep_codes_gb):
    """Pass 2 replays pass 1's codes by default; encoding every batch again (no budget, or codes
    that outgrow it) must give the same documents exactly."""
    _, again = run(cache_dir, dictionary_dir, tokenizer, W_U, keep_codes_gb=keep_codes_gb)
    assert again == result[1]


def test_summary_records_the_inputs_and_the_density_histogram(result, truth, cache_dir):
    summary, docs = result
    firing = FeatureFiring(D_SAE)
    firing.update(truth.acts[truth.analyzed])
    histogram = firing.density_histogram(20)
    assert summary["density_histogram"] == {"log10_edges": histogram.edges.tolist(),
                                            "counts": histogram.counts.tolist(), "dead": histogram.n_dead}
    assert summary["hook"] == "blocks.1.hook_resid_post" and summary["cache"] == str(cache_dir.resolve())
    assert summary["d_sae"] == D_SAE and summary["kind"] == "topk" and summary["config"]["top_k"] == 6
    assert summary["dead_fraction"] == pytest.approx(sum(d["n_fired"] == 0 for d in docs) / D_SAE)
    json.dumps(summary, allow_nan=False)


def test_documents_are_plain_json_and_stay_small(result, cache_dir, dictionary_dir, tokenizer, W_U):
    def plain(value) -> bool:
        if isinstance(value, dict):
            return all(isinstance(k, str) and plain(v) for k, v in value.items())
        if isinstance(value, list):
            return all(plain(v) for v in value)
        return type(value) in (int, float, str, bool)

    _, docs = result
    assert all(plain(doc) for doc in docs)
    # Generous limits: every window reaches across the whole context (ctx = 24 tokens).
    _, big = run(cache_dir, dictionary_dir, tokenizer, W_U, top_k=50, window=32, n_bands=10, per_band=5,
                 histogram_bins=128, n_logits=50, n_neighbors=50, batch_size=64)
    sizes = [len(json.dumps(doc, allow_nan=False)) for doc in big]
    largest = big[sizes.index(max(sizes))]
    examples = len(largest["top_contexts"]) + sum(len(q["examples"]) for q in largest["quantiles"])
    tokens = sum(len(e["tokens"]) for e in largest["top_contexts"]) + sum(
        len(e["tokens"]) for q in largest["quantiles"] for e in q["examples"])
    assert max(sizes) < 1_000_000
    # Extrapolate: 100 examples of 65-token windows (top_k=50, window=32, 10 bands x 5) in a longer context.
    per_token = max(sizes) / tokens
    assert examples > 50 and per_token * 100 * 65 < 1_000_000, (max(sizes), tokens, per_token)


def test_max_contexts_and_bos_options(cache_dir, dictionary_dir, tokenizer, W_U, truth):
    summary, docs = run(cache_dir, dictionary_dir, tokenizer, W_U, max_contexts=10, n_bands=0)
    assert summary["n_contexts"] == 10 and summary["n_tokens"] == int(truth.analyzed[:10].sum())
    assert all(d["quantiles"] == [] for d in docs)
    assert all(e["context_id"] in truth.context_ids[:10].tolist() for d in docs for e in d["top_contexts"])
    summary, _ = run(cache_dir, dictionary_dir, tokenizer, W_U, max_contexts=10, include_bos=True, n_bands=0)
    assert summary["n_tokens"] == int(truth.valid[:10].sum())


def test_analyze_loads_the_tokenizer_and_unembedding_the_cache_records(result, cache_dir, dictionary_dir):
    cfg = AnalyzeConfig(dictionary=dictionary_dir, cache=cache_dir, **SETTINGS)
    summary, docs = analyze(cfg)
    assert_same(list(docs), result[1])
    assert summary["model"] == result[0]["model"]


def test_a_1d_cache_or_another_width_is_refused(tmp_path, model_dir, dataset_file, dictionary_dir, tokenizer):
    generate(load_config(GenerateConfig, None, [
        f"model.name={model_dir}", f"data.path={dataset_file}", "data.context_size=16", "data.max_tokens=320",
        'hooks=["blocks.1.hook_resid_post", "blocks.0.mlp.hook_post"]', f"output_dir={tmp_path}",
        "progress=false", "disk_headroom_gb=0", "layout=2d",
    ]))
    one_d = tmp_path / "one_d"
    generate(load_config(GenerateConfig, None, [
        f"model.name={model_dir}", f"data.path={dataset_file}", "data.context_size=16", "data.max_tokens=320",
        'hooks=["blocks.1.hook_resid_post"]', f"output_dir={one_d}", "progress=false", "disk_headroom_gb=0",
    ]))
    dictionary = Dictionary.from_pretrained(dictionary_dir)
    with pytest.raises(CacheError, match="layout = \"2d\""):
        cfg = AnalyzeConfig(dictionary=dictionary_dir, cache=one_d / "blocks.1.hook_resid_post", **SETTINGS)
        analyze_features(cfg, dictionary, open_cache(cfg.cache), tokenizer)
    with pytest.raises(CacheError, match="d_model=128 .* d_in=32"):
        cfg = AnalyzeConfig(dictionary=dictionary_dir, cache=tmp_path / "blocks.0.mlp.hook_post", **SETTINGS)
        analyze_features(cfg, dictionary, open_cache(cfg.cache), tokenizer)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_gpu_gives_the_cpu_results(result, cache_dir, dictionary_dir, tokenizer, W_U):
    summary, docs = run(cache_dir, dictionary_dir, tokenizer, W_U, device="cuda")
    assert_same(docs, result[1], rel=1e-4, abs=1e-5)
    assert summary["n_tokens"] == result[0]["n_tokens"]


def test_a_manifest_with_a_wrong_sha256_fails_analyze_naming_the_shard(tmp_path, cache_dir, dictionary_dir, capsys):
    import shutil

    from lm_saes.cli import main

    hook = tmp_path / "edited"
    shutil.copytree(cache_dir, hook)
    manifest = json.loads((hook / "manifest.json").read_text())
    manifest["shards"][-1]["sha256"] = "0" * 64
    (hook / "manifest.json").write_text(json.dumps(manifest))
    code = main(["analyze", "--set", f"dictionary={dictionary_dir}", "--set", f"cache={hook}",
                 "--set", f"store.data_dir={tmp_path / 'store'}", "--set", "device=cpu"])
    err = capsys.readouterr().err
    assert code == 2 and f"{hook / manifest['shards'][-1]['file']} does not match the sha256" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "store").exists()
