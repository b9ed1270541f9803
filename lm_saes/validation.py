"""Checks every config value and command-line argument passes before any work starts.

Whatever its field, a value must fit a 64-bit integer (torch and MongoDB store no more), be a
finite number, and be valid UTF-8 text (a command line's undecodable bytes are not); names that
records are stored and served under (``check_name``) and device strings have their own rules.
"""

from __future__ import annotations

import math
from typing import Any

INT64_MAX = 2**63 - 1  # every integer a config holds must fit torch's and MongoDB's 64-bit integers
MAX_NAME_CHARS = 200
DEVICE_PATTERN = r"^(auto|cpu|mps|meta|(cuda|xpu|npu)(:\d{1,3})?)$"  # what torch.device accepts, checked early


def check_name(name: str) -> str:
    """A name a record is stored and served under (a dictionary, an analysis): 1-200 characters,
    no '/', '\\' or control characters, not starting with '$' (MongoDB operators)."""
    problem = name_problem(name)
    if problem:
        raise ValueError(problem)
    return name


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a stored record, or None."""
    if not 0 < len(name) <= MAX_NAME_CHARS or name != name.strip():
        return f"a name must be 1 to {MAX_NAME_CHARS} characters without leading or trailing spaces, got {name!r}"
    if name.startswith("$"):
        return f"a name may not start with '$' (MongoDB reads it as an operator), got {name!r}"
    bad = sorted({c for c in name if c in "/\\" or not c.isprintable()})
    if bad:
        return f"a name may not contain {bad} (it is part of the UI's URLs), got {name!r}"
    return None


def value_problems(data: Any, where: str = "") -> list[str]:
    """Values no field accepts, whatever its type: integers beyond 64 bits, NaN or infinite
    numbers, and text that is not valid UTF-8 (a command line's undecodable bytes)."""
    if isinstance(data, dict):
        return [p for key, value in data.items() for p in value_problems(value, f"{where}{key}.")]
    if isinstance(data, (list, tuple)):
        return [p for i, value in enumerate(data) for p in value_problems(value, f"{where}{i}.")]
    field = where.rstrip(".") or "(top level)"
    if isinstance(data, int) and not isinstance(data, bool) and abs(data) > INT64_MAX:
        return [f"{field}: {data} is beyond the 64-bit integer range (|x| <= {INT64_MAX})"]
    if isinstance(data, float) and not math.isfinite(data):
        return [f"{field}: {data} is not a finite number"]
    if isinstance(data, str):
        try:
            data.encode("utf-8")
        except UnicodeEncodeError:
            return [f"{field}: {_undecodable(data)!r} is not valid UTF-8 text"]
    return []


def _undecodable(text: str) -> str:
    """Text that is not valid UTF-8, shown with its bad bytes (or lone surrogates) escaped."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")  # a command line's bytes
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode()
