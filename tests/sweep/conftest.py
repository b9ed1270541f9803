from __future__ import annotations

from pathlib import Path

import pytest

from lm_saes.activations.generate import generate
from lm_saes.config import GenerateConfig, load_config

HOOK = "blocks.1.hook_resid_post"
CTX = 32


@pytest.fixture(scope="session")
def sweep_cache(tmp_path_factory, model_dir, dataset_file) -> Path:
    """A 1d (shuffled tokens) cache of the tiny test model: 6,144 activations of width 32."""
    root = tmp_path_factory.mktemp("sweep-cache")
    generate(load_config(GenerateConfig, None, [
        f"model.name={model_dir}", f"data.path={dataset_file}", f"data.context_size={CTX}",
        f"data.max_tokens={CTX * 192}", f'hooks=["{HOOK}"]', f"output_dir={root}", "layout=1d",
        "batch_size=32", "progress=false", "disk_headroom_gb=0",
    ]))
    return root / HOOK
