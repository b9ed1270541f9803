"""The sparse dictionary family. A new variant is one module and one line in VARIANTS."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from lm_saes.config import DictionaryConfig
from lm_saes.dictionaries.base import Dictionary, DictionaryOutput, LossOutput, TrainingContext
from lm_saes.dictionaries.batchtopk import BatchTopKDictionary
from lm_saes.dictionaries.jumprelu import JumpReLUDictionary
from lm_saes.dictionaries.relu import ReLUDictionary
from lm_saes.dictionaries.topk import TopKDictionary

VARIANTS: dict[str, type[Dictionary]] = {
    cls.kind: cls for cls in (ReLUDictionary, TopKDictionary, BatchTopKDictionary, JumpReLUDictionary)
}


def dictionary_config(data: dict[str, Any]) -> DictionaryConfig:
    """Validate a dictionary config dict (tagged by ``kind``)."""
    return TypeAdapter(DictionaryConfig).validate_python(data)


def build_dictionary(cfg: DictionaryConfig, d_in: int, d_out: int, transcoder: bool = False) -> Dictionary:
    return VARIANTS[cfg.kind](cfg, d_in=d_in, d_out=d_out, transcoder=transcoder)


__all__ = [
    "VARIANTS", "Dictionary", "DictionaryOutput", "LossOutput", "TrainingContext",
    "build_dictionary", "dictionary_config",
]
