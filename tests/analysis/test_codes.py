"""Codes (where features fire) from the TopK selection against the dense slow twin, their lookup,
and the compact copy pass 2 replays, on the real cache and trained TopK dictionary of conftest.py."""

from __future__ import annotations

import pytest
import torch

from lm_saes.activations.reader import open_cache
from lm_saes.analysis.codes import KeptBatch, dense_codes, encode_codes
from lm_saes.analysis.contexts import context_batches
from lm_saes.data.framing import special_ids
from lm_saes.dictionaries import Dictionary, build_dictionary, dictionary_config


@pytest.fixture(scope="module")
def encoded(cache_dir, dictionary_dir, tokenizer):
    dictionary = Dictionary.from_pretrained(dictionary_dir)
    batches = list(context_batches(open_cache(cache_dir), 16, torch.device("cpu"), special_ids(tokenizer)))
    return dictionary, batches


def test_topk_codes_equal_the_dense_codes_exactly(encoded):
    dictionary, batches = encoded
    assert dictionary.kind == "topk"
    with torch.no_grad():
        for batch in batches:
            fast, slow = encode_codes(dictionary, batch), encode_codes(dictionary, batch, sparse=False)
            assert len(fast.values) > 0
            for a, b in zip(fast, slow):
                assert torch.equal(a, b)


def test_codes_are_the_positive_activations_of_analyzed_tokens(encoded, truth):
    dictionary, batches = encoded
    with torch.no_grad():
        for batch in batches:
            n = len(batch.tokens)
            fired = encode_codes(dictionary, batch)
            dense = truth.acts[batch.first : batch.first + n]  # zero where not analyzed
            rows, positions, features = (dense > 0).nonzero(as_tuple=True)
            assert torch.equal(fired.rows, rows) and torch.equal(fired.positions, positions)
            assert torch.equal(fired.features, features)
            torch.testing.assert_close(fired.values, dense[rows, positions, features])


@pytest.mark.parametrize("width", [1, 7, 60])
def test_windows_read_the_dense_activations(encoded, truth, width):
    """Every (context, feature) window, also ones reaching past either end of the context."""
    dictionary, batches = encoded
    batch = batches[1]
    n, ctx = batch.tokens.shape
    d_sae = dictionary.d_sae
    with torch.no_grad():
        fired = encode_codes(dictionary, batch)
    rows = torch.arange(n).repeat_interleave(d_sae * 3)
    features = torch.arange(d_sae).repeat_interleave(3).repeat(n)
    starts = torch.tensor([-width // 2, ctx // 3, ctx - width // 2]).repeat(n * d_sae)
    dense = torch.nn.functional.pad(truth.acts[batch.first : batch.first + n], (0, 0, width, width))  # [n, ctx + 2w, d_sae]
    positions = starts[:, None] + width + torch.arange(width)  # into the padded contexts
    expected = dense[rows[:, None], positions, features[:, None]]
    assert expected.count_nonzero() > 0
    torch.testing.assert_close(fired.windows(rows, features, starts, width, ctx, d_sae), expected, rtol=0, atol=0)
    empty = dense_codes(batch, torch.zeros(n, ctx, d_sae))
    assert not empty.windows(rows[:5], features[:5], starts[:5], width, ctx, d_sae).any()


def test_a_kept_batch_restores_the_batch_and_its_codes(encoded):
    dictionary, batches = encoded
    batch = batches[2]
    with torch.no_grad():
        fired = encode_codes(dictionary, batch)
    kept = KeptBatch.keep(batch, fired)
    assert kept.nbytes() == sum(t.numel() * t.element_size() for t in kept if isinstance(t, torch.Tensor))
    assert kept.nbytes() < 13 * len(fired.values) + 8 * batch.tokens.numel()
    restored, codes = kept.restore(torch.device("cpu"))
    for name in ("tokens", "context_ids", "valid", "analyzed", "first"):
        assert torch.equal(torch.as_tensor(getattr(restored, name)), torch.as_tensor(getattr(batch, name))), name
    for a, b in zip(codes, fired):
        assert torch.equal(a, b)


def test_a_token_normalising_topk_codes_its_normalised_tokens_on_the_fast_path_too(encoded):
    trained, batches = encoded
    dictionary = build_dictionary(dictionary_config({**trained.cfg.model_dump(), "normalize_tokens": True}),
                                  trained.d_in, trained.d_out)
    dictionary.load_state_dict(trained.state_dict())
    dictionary.eval()
    with torch.no_grad():
        fast, slow = encode_codes(dictionary, batches[0]), encode_codes(dictionary, batches[0], sparse=False)
        plain = encode_codes(trained, batches[0])
    assert len(fast.values) > 0 and not torch.equal(fast.values, plain.values)  # the norms differ from sqrt(d)
    for a, b in zip(fast, slow):
        assert torch.equal(a, b)
