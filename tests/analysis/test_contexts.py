"""context_batches: every context once, in the cache's order, for any batch size."""

from __future__ import annotations

import pytest
import torch

from lm_saes.activations.reader import open_cache
from lm_saes.analysis.contexts import context_batches, n_stream_contexts


@pytest.mark.parametrize("batch_size", [1, 7, 1000])
def test_batches_cover_the_cache_in_order(cache_dir, truth, tokenizer, batch_size):
    cache = open_cache(cache_dir)
    assert len(cache.shards) > 2  # batches straddle shard boundaries
    batches = list(context_batches(cache, batch_size, torch.device("cpu"), {tokenizer.bos_token_id}))
    assert [b.first for b in batches] == list(range(0, len(truth.tokens), batch_size))
    assert all(len(b.tokens) == batch_size for b in batches[:-1])
    assert torch.equal(torch.cat([b.context_ids for b in batches]), truth.context_ids)
    assert torch.equal(torch.cat([b.tokens for b in batches]), truth.tokens)
    assert torch.equal(torch.cat([b.valid for b in batches]), truth.valid)
    assert torch.equal(torch.cat([b.analyzed for b in batches]), truth.analyzed)
    assert batches[0].activations.dtype == torch.float32


def test_max_contexts_and_include_bos(cache_dir, truth, tokenizer):
    cache = open_cache(cache_dir)
    assert n_stream_contexts(cache, 45) == 45 and n_stream_contexts(cache, None) == len(truth.tokens)
    batches = list(context_batches(cache, 10, torch.device("cpu"), {tokenizer.bos_token_id}, include_bos=True,
                                   max_contexts=45))
    assert [len(b.tokens) for b in batches] == [10, 10, 10, 10, 5]
    assert torch.equal(torch.cat([b.analyzed for b in batches]), truth.valid[:45])
