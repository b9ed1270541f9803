"""Held-out windows from the analysis's 2d cache: every window's activations equal the dictionary run
over the whole contexts (the slow twin), silent ones are zero for their feature, and each draw is
the feature's own."""

from __future__ import annotations

import torch

from lm_saes.activations.reader import open_cache
from lm_saes.analysis.contexts import context_batches
from lm_saes.config import ModelConfig
from lm_saes.dictionaries import Dictionary
from lm_saes.interpret.pool import build_pool
from lm_saes.models.backend import load_tokenizer

WINDOW = 3  # conftest's analysis window


def test_windows_hold_each_features_true_activations(analyzed):
    pool = build_pool(analyzed.cache, analyzed.dictionary_dir, "blocks.1.hook_resid_post", WINDOW, n_contexts=40,
                      include_bos=False, batch_size=7, device="cpu")
    width = 2 * WINDOW + 1
    assert len(pool.tokens) == len(pool.origins) > 40 and all(len(t) == width for t in pool.tokens)

    cache = open_cache(analyzed.cache)
    tokenizer = load_tokenizer(ModelConfig(name=cache.manifest.config["model"]["name"]))
    dictionary = Dictionary.from_pretrained(analyzed.dictionary_dir)
    acts, tokens = {}, {}
    with torch.inference_mode():  # the slow twin: every context whole, then the windows cut from it
        for batch in context_batches(cache, 64, torch.device("cpu"), tokenizer.bos_token_id, False, 40):
            encoded = dictionary.encode(batch.activations) * batch.analyzed[..., None]  # [n, ctx, d_sae]
            for row, cid in enumerate(batch.context_ids.tolist()):
                acts[cid], tokens[cid] = encoded[row], batch.tokens[row]
    for w, (cid, start) in enumerate(pool.origins):
        assert pool.tokens[w] == [tokenizer.decode([t]) for t in tokens[cid][start:start + width].tolist()]
    silent_somewhere = fired_somewhere = 0
    for feature in range(dictionary.d_sae):
        truth = lambda w: acts[pool.origins[w][0]][pool.origins[w][1]:][:width, feature]  # noqa: E731
        silent, drawn = pool.choose_silent(feature, 5, seed=0), pool.choose_random(feature, 5, seed=0)
        assert silent == pool.choose_silent(feature, 5, seed=0) and len(silent) <= 5 and len(drawn) == 5
        assert all(not truth(w).any() for w in silent)
        for w in drawn:
            assert torch.allclose(torch.tensor(pool.window(feature, w).acts, dtype=torch.float64), truth(w).double(), atol=1e-6)
        silent_somewhere += len(silent)
        fired_somewhere += sum(bool(truth(w).any()) for w in range(len(pool.tokens)))
    assert silent_somewhere > 0 and fired_somewhere > 0  # both checks above had something to check


def test_a_window_wider_than_the_contexts_is_cut_to_their_length(analyzed):
    ctx = open_cache(analyzed.cache).manifest.config["data"]["context_size"]
    pool = build_pool(analyzed.cache, analyzed.dictionary_dir, "blocks.1.hook_resid_post", ctx, n_contexts=8,
                      include_bos=True, batch_size=8, device="cpu")  # 2 * ctx + 1 tokens: wider than any context
    assert pool.tokens and all(len(t) == ctx for t in pool.tokens) and all(start == 0 for _, start in pool.origins)
