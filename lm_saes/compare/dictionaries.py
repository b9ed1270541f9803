"""Two dictionaries compared by their decoder directions (the rows of W_dec, in the output space).

With ``live_only``, a latent counts when it fired on some of ``examples`` tokens of one cache
(by default the one ``a`` was trained on), both dictionaries encoding the same tokens.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import torch
from torch import Tensor

from lm_saes.activations.reader import open_cache
from lm_saes.compare.config import CompareConfig
from lm_saes.compare.similarity import Comparison, compare, kept
from lm_saes.dictionaries import Dictionary
from lm_saes.dictionaries.base import CONFIG_NAME
from lm_saes.errors import CacheError, ConfigError
from lm_saes.evaluation.metrics import FeatureFiring, cosine_similarities


def compare_dictionaries(cfg: CompareConfig, device: torch.device) -> dict[str, dict[str, Comparison]]:
    """{"decoder": {"direction": the comparison of the two decoders}}."""
    a = Dictionary.from_pretrained(cfg.a, device=device)
    b = Dictionary.from_pretrained(cfg.b, device=device)
    if a.d_out != b.d_out:
        raise ConfigError(f"cannot compare dictionaries of different d_model: {cfg.a} decodes into {a.d_out} "
                          f"dimensions and {cfg.b} into {b.d_out}; compare dictionaries of the same hook point")
    keep_a, keep_b = _live(cfg, a, b, device) if cfg.live_only else (None, None)
    index_a, index_b = kept(keep_a, a.d_sae), kept(keep_b, b.d_sae)
    similarities = cosine_similarities(a.W_dec.detach()[index_a], b.W_dec.detach()[index_b])  # [n_a, n_b]
    return {"decoder": {"direction": compare(similarities, index_a, index_b, cfg.bins)}}


@torch.no_grad()
def _live(cfg: CompareConfig, a: Dictionary, b: Dictionary, device: torch.device) -> tuple[Tensor, Tensor]:
    """Which latents of each fired on ``cfg.examples`` tokens of the cache."""
    cache_dir = cfg.cache or _training_cache(cfg.a)
    source = open_cache(cache_dir, reads=cfg.examples)
    for path, d in ((cfg.a, a), (cfg.b, b)):
        if d.d_in != source.d_model:
            raise CacheError(f"{cache_dir} holds d_model={source.d_model} activations but {path} reads "
                             f"d_in={d.d_in}; set `cache` to a cache of its input hook")
    firing = {"a": FeatureFiring(a.d_sae, device=device), "b": FeatureFiring(b.d_sae, device=device)}
    batches = source.batches(cfg.batch_size, seed=cfg.seed, device=device, dtype=torch.float32)
    for x in itertools.islice(batches, max(1, cfg.examples // cfg.batch_size)):
        firing["a"].update(a.encode(x))
        firing["b"].update(b.encode(x))
    return firing["a"].alive(), firing["b"].alive()


def _training_cache(directory: Path) -> Path:
    config = directory / CONFIG_NAME
    source = json.loads(config.read_text()).get("source", {}) if config.is_file() else {}
    if not source.get("cache"):
        raise CacheError(f"{directory} does not record its training cache; set `cache` to measure which latents "
                         "are live (--set cache=PATH)")
    return Path(source["cache"])
