"""Tiny dictionaries with hand-set weights, so a test can check its numbers by hand."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest
import torch

from lm_saes.dictionaries import Dictionary, build_dictionary, dictionary_config

KNOBS = {  # the required knobs of each variant (the rest keep their defaults)
    "relu": {"l1_coefficient": 0.1},
    "topk": {"k": 1},
    "batchtopk": {"k": 1, "normalize_tokens": False},  # its maths by hand; token normalisation: test_base
    "jumprelu": {"l0_coefficient": 0.1},
}

Matrix = Sequence[Sequence[float]]


def tensor(values: Sequence | float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


@pytest.fixture
def make() -> Callable[..., Dictionary]:
    """make(kind, d_sae, d_in, d_out=d_in, W_enc=..., b_enc=..., W_dec=..., b_dec=..., **knobs)."""

    def build(
        kind: str, d_sae: int, d_in: int, d_out: int | None = None, *, transcoder: bool = False,
        W_enc: Matrix | None = None, b_enc: Sequence[float] | None = None,
        W_dec: Matrix | None = None, b_dec: Sequence[float] | None = None, **knobs: float,
    ) -> Dictionary:
        cfg = dictionary_config({"kind": kind, "d_sae": d_sae, **KNOBS[kind], **knobs})
        d = build_dictionary(cfg, d_in, d_out or d_in, transcoder)
        with torch.no_grad():
            for name, value in {"W_enc": W_enc, "b_enc": b_enc, "W_dec": W_dec, "b_dec": b_dec}.items():
                if value is not None:
                    getattr(d, name).copy_(tensor(value))
        return d

    return build
