"""Checks every config value passes: 64-bit integers, finite numbers, UTF-8 text, stored names."""

import re

import pytest

from lm_saes.validation import INT64_MAX, check_name, value_problems


def test_values_beyond_64_bits_non_finite_or_undecodable_are_named_by_their_path():
    data = {"a": {"b": [1, INT64_MAX + 1]}, "lr": float("inf"), "path": "caf\udce9", "ok": INT64_MAX, "flag": True}
    assert value_problems(data) == [
        f"a.b.1: {INT64_MAX + 1} is beyond the 64-bit integer range (|x| <= {INT64_MAX})",
        "lr: inf is not a finite number",
        "path: 'caf\\\\xe9' is not valid UTF-8 text",
    ]


@pytest.mark.parametrize("name", ["topk", "sweep.topk-k16", "naïve name", "x" * 200])
def test_names_the_store_and_the_urls_take(name):
    assert check_name(name) == name


@pytest.mark.parametrize("name, why", [
    ("", "1 to 200 characters"), ("x" * 201, "1 to 200 characters"), (" topk", "leading or trailing"),
    ("$where", "may not start with '$'"), ("a/b", "may not contain ['/']"), ("a\nb", "may not contain ['\\n']"),
])
def test_names_that_would_break_a_query_or_a_url_are_refused(name, why):
    with pytest.raises(ValueError, match=re.escape(why)):
        check_name(name)
