"""lm-saes: sparse dictionary learning on language-model internals.

The stages are plain functions over validated configs; the CLI calls the same ones::

    from lm_saes import GenerateConfig, generate, load_config, open_cache
    result = generate(load_config(GenerateConfig, "examples/generate.toml"))
    cache = open_cache(result.caches["blocks.1.hook_resid_post"])
"""

__version__ = "0.1.0"

from lm_saes.activations.generate import GenerateResult, generate
from lm_saes.activations.reader import ActivationCache, open_cache
from lm_saes.config import DataConfig, GenerateConfig, ModelConfig, PretrainConfig, load_config

__all__ = [
    "ActivationCache", "DataConfig", "GenerateConfig", "GenerateResult", "ModelConfig", "PretrainConfig",
    "generate", "load_config", "open_cache",
]
