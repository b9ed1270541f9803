"""What may enter the store: conversion at the boundary, the feature split and its size limit."""

from __future__ import annotations

import math

import bson
import numpy as np
import pytest
import torch

from lm_saes.errors import StoreError
from lm_saes.store.documents import MAX_FEATURE_BYTES, plain, split_feature


def test_plain_converts_numpy_and_torch_to_python():
    doc = plain({
        "a": np.float32(0.5), "b": np.int64(3), "c": np.bool_(True), "d": np.arange(3),
        "e": torch.tensor(2.5), "f": torch.tensor([[1, 2]]), "g": (1, 2.0), "h": torch.tensor([1.0], dtype=torch.bfloat16),
    })
    assert doc == {"a": 0.5, "b": 3, "c": True, "d": [0, 1, 2], "e": 2.5, "f": [[1, 2]], "g": [1, 2.0], "h": [1.0]}
    assert type(doc["b"]) is int and type(doc["c"]) is bool and type(doc["a"]) is float
    bson.encode(doc)  # all BSON-native


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, np.float32("nan"), torch.tensor([1.0, float("inf")])])
def test_plain_rejects_non_finite_numbers_naming_the_path(bad):
    with pytest.raises(StoreError, match=r"x\.top\[1\].*finite"):
        plain({"top": [0.0, {"acts": bad}]}, "x")


@pytest.mark.parametrize("bad, message", [
    ({"b": b"raw"}, "type bytes"),
    ({"o": object()}, "type object"),
    ({"$set": 1}, "keys must be"),
    ({"a.b": 1}, "keys must be"),
    ({1: 1}, "keys must be"),
    ({"n": 2**63}, "64-bit"),
])
def test_plain_rejects_what_is_not_plain_json(bad, message):
    with pytest.raises(StoreError, match=message):
        plain(bad)


def test_split_puts_scalars_in_the_summary_and_the_rest_in_the_details(feature):
    parts = split_feature(feature(4, interpretation="cats", note=None), "d", "default", "run1")
    assert parts.index == 4
    assert parts.summary == {
        "analysis_id": "run1", "index": 4, "dictionary": "d", "analysis": "default",
        "n_fired": 12, "density": 0.04, "max_activation": 5.0, "interpretation": "cats",
    }
    assert set(parts.details) == {"analysis_id", "index", "top_contexts", "histogram"}
    assert "note" not in parts.summary and "note" not in parts.details  # None is left out, never null
    assert parts.n_bytes == len(bson.encode(parts.summary)) + len(bson.encode(parts.details))


@pytest.mark.parametrize("change, message", [
    ({"index": -1}, "non-negative integer"),
    ({"index": True}, "non-negative integer"),
    ({"density": 1.5}, r"fraction in \[0, 1\]"),
    ({"density": None}, "'density' must be a number"),
    ({"max_activation": "big"}, "'max_activation' must be a number"),
    ({"interpretation": 3}, "'interpretation' must be a string"),
    ({"_id": 1}, "set by the store"),
    ({"analysis_id": "x"}, "set by the store"),
    ({"dictionary": "other"}, "being written to dictionary 'd'"),
])
def test_split_checks_the_required_fields(feature, change, message):
    doc = feature(1)
    doc.update(change)
    with pytest.raises(StoreError, match=message):
        split_feature(doc, "d", "default", "run1")


def test_a_large_k_feature_stays_under_the_limit(large_feature):
    parts = split_feature(large_feature(top_k=1000, window=64), "d", "default", "run1")
    assert parts.n_bytes <= MAX_FEATURE_BYTES < 16 * 2**20
    assert len(bson.encode(parts.details)) < 16 * 2**20


def test_an_oversized_feature_is_refused_before_it_reaches_the_server(large_feature):
    with pytest.raises(StoreError, match=r"feature 123 encodes to .* MiB.*lower top_k, window"):
        split_feature(large_feature(top_k=3000, window=64), "d", "default", "run1")


def test_details_travel_as_one_json_string_and_come_back_equal():
    from lm_saes.store.documents import loaded_details, stored_details

    details = {"analysis_id": "r1", "index": 3, "top_contexts": [{"tokens": [" a", "\n"], "acts": [0.0, 1.5]}],
               "histogram": {"edges": [0.0, 1.0], "counts": [2]}}
    stored = stored_details(details)
    assert set(stored) == {"analysis_id", "index", "json"} and isinstance(stored["json"], str)
    assert loaded_details(stored) == {k: v for k, v in details.items() if k not in ("analysis_id", "index")}
    assert loaded_details(None) == {}
