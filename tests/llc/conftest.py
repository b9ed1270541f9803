from __future__ import annotations

from pathlib import Path

import pytest

from lm_saes.activations.generate import generate
from lm_saes.config import GenerateConfig, TrainConfig, load_config

HOOK = "blocks.1.hook_resid_post"


@pytest.fixture(scope="session")
def trained_dictionary(tmp_path_factory, model_dir, dataset_file) -> Path:
    """A TopK SAE (d_sae 64) trained for a few steps on a 1d cache of the tiny test model."""
    from lm_saes.training.train import train

    root = tmp_path_factory.mktemp("llc-dictionary")
    generate(load_config(GenerateConfig, None, [
        f"model.name={model_dir}", f"data.path={dataset_file}", "data.context_size=32", "data.max_tokens=2048",
        f'hooks=["{HOOK}"]', f"output_dir={root / 'cache'}", "progress=false", "disk_headroom_gb=0",
    ]))
    cfg = TrainConfig.model_validate({
        "dictionary": {"kind": "topk", "d_sae": 64, "k": 8}, "cache": root / "cache" / HOOK,
        "output_dir": root / "topk", "total_tokens": 4096, "batch_size": 256, "progress": False, "device": "cpu",
    })
    return train(cfg).output_dir
