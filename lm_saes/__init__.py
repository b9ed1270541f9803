"""lm-saes: sparse dictionary learning on language-model internals.

The stages are plain functions over validated configs; the CLI calls the same ones::

    from lm_saes import GenerateConfig, generate, load_config, open_cache
    result = generate(load_config(GenerateConfig, "examples/generate.toml"))
    cache = open_cache(result.caches["blocks.1.hook_resid_post"])

Names load on first use, so importing a light submodule (the store, the configs) does not pull
in torch and transformers.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "ActivationCache": "lm_saes.activations.reader",
    "open_cache": "lm_saes.activations.reader",
    "GenerateResult": "lm_saes.activations.generate",
    "generate": "lm_saes.activations.generate",
    "DataConfig": "lm_saes.config",
    "GenerateConfig": "lm_saes.config",
    "ModelConfig": "lm_saes.config",
    "PretrainConfig": "lm_saes.config",
    "TrainConfig": "lm_saes.config",
    "EvalConfig": "lm_saes.config",
    "load_config": "lm_saes.config",
    "train": "lm_saes.training.train",
    "evaluate": "lm_saes.evaluation.run",
    "Dictionary": "lm_saes.dictionaries",
    "SweepConfig": "lm_saes.sweep.config",
    "run_sweep": "lm_saes.sweep.run",
    "ToyTrainConfig": "lm_saes.toys.config",
    "train_toy": "lm_saes.toys.train",
    "load_toy": "lm_saes.toys.directory",
    "LLCConfig": "lm_saes.llc.config",
    "run_llc": "lm_saes.llc.stage",
    "SPDTrainConfig": "lm_saes.spd.config",
    "train_spd": "lm_saes.spd.train",
    "load_decomposition": "lm_saes.spd.directory",
    "CompareConfig": "lm_saes.compare.config",
    "compare_runs": "lm_saes.compare.stage",
    "InterpretConfig": "lm_saes.interpret.config",
    "run_interpret": "lm_saes.interpret.stage",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'lm_saes' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
