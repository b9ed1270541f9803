"""Synthetic activations with known features as a source for ``lm-saes generate``.

The cache is an ordinary 1d cache (shards, manifest, the same reader), so everything that trains
or evaluates on a cache works on it; beside the shards, ``ground_truth.safetensors`` holds the
true features (unit directions [n_features, d], their probabilities and groups). Chunk ``i``'s
samples come from a generator seeded by (seed, i): the cache is a pure function of the config,
whatever the number of processes, and a killed run resumes chunk by chunk like a model's.
Samples are independent, so there is nothing to shuffle; ``tokens`` is -1 (no text).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import torch
from jaxtyping import Float
from safetensors import safe_open
from torch import Tensor

from lm_saes.activations.plan import SHARD_HEADER_BYTES
from lm_saes.artifacts import write_safetensors
from lm_saes.config import GenerateConfig
from lm_saes.data.synthetic import SyntheticFeatures, features_from_config, sample, settings_from_config
from lm_saes.errors import CacheError

GROUND_TRUTH_NAME = "ground_truth.safetensors"
NO_TOKEN = -1
_TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class SyntheticSource:
    """``lm-saes generate``'s source for a ``[synthetic]`` config (see ``ModelSource``)."""

    def __init__(self, cfg: GenerateConfig) -> None:
        syn = cfg.synthetic
        self.cfg, self.syn = cfg, syn
        self.features = features_from_config(syn)
        self.settings = settings_from_config(syn)
        self.model_name, self.context_size, self.n_contexts = "synthetic", 1, syn.n_tokens
        self.widths = {cfg.hooks[0]: syn.d_model}
        self.dtype = _TORCH_DTYPES[cfg.dtype]
        self.row_bytes = syn.d_model * self.dtype.itemsize + 4  # activations and the token id
        self.rows_per_chunk = max(1, (int(cfg.shard_size_mb * 2**20) - SHARD_HEADER_BYTES) // self.row_bytes)
        self.n_chunks = math.ceil(syn.n_tokens / self.rows_per_chunk)

    def chunk_tokens(self, chunk: int) -> int:
        return min(self.rows_per_chunk, self.syn.n_tokens - chunk * self.rows_per_chunk)

    def chunk_bytes(self, chunk: int) -> int:
        return self.chunk_tokens(chunk) * self.row_bytes + SHARD_HEADER_BYTES

    def prepare(self, root: Path) -> None:
        """The true features, written before any shard (they are a function of the seed alone)."""
        write_ground_truth(root / self.cfg.hooks[0], self.features, self.syn.model_dump(mode="json"))

    def run_chunk(self, chunk: int, progress: Callable[[int], object]):
        n = self.chunk_tokens(chunk)
        generator = torch.Generator().manual_seed(self.syn.seed * 1_000_003 + chunk + 1)
        acts = sample(self.features, n, generator, settings=self.settings).to(self.dtype)  # [n, d]
        progress(n)
        tokens = torch.full((n,), NO_TOKEN, dtype=torch.int32)
        return {self.cfg.hooks[0]: {"activations": acts.contiguous(), "tokens": tokens}}, None


def write_ground_truth(hook_dir: Path, features: SyntheticFeatures, config: dict) -> None:
    hook_dir.mkdir(parents=True, exist_ok=True)
    tensors = {"directions": features.directions.contiguous(), "probabilities": features.probabilities.contiguous(),
               "group": features.group.contiguous()}
    write_safetensors(hook_dir / GROUND_TRUTH_NAME, tensors, metadata={"synthetic": json.dumps(config)})


def read_ground_truth(hook_dir: str | Path | None) -> Float[Tensor, "n_features d"] | None:
    """The true feature directions of a synthetic cache, or None for a model's cache."""
    if hook_dir is None:
        return None
    path = Path(hook_dir) / GROUND_TRUTH_NAME
    if not path.is_file():
        return None
    try:
        with safe_open(path, framework="pt") as f:
            return f.get_tensor("directions")
    except Exception as e:
        raise CacheError(f"{path} is not a readable ground-truth file ({e}); regenerate the cache") from e
