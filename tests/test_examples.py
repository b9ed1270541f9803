"""Every config in examples/ validates and runs (scaled down to test-sized models and data)."""

from pathlib import Path

import pytest

from lm_saes.activations.generate import generate
from lm_saes.activations.manifest import read_manifest
from lm_saes.config import GenerateConfig, PretrainConfig, load_config

EXAMPLES = Path(__file__).parent.parent / "examples"
STAGE_OF = {"tiny_lm.toml": PretrainConfig, "generate.toml": GenerateConfig, "generate_2d.toml": GenerateConfig}


def test_every_example_is_registered_and_valid():
    assert {p.name for p in EXAMPLES.glob("*.toml")} == set(STAGE_OF)
    for name, stage in STAGE_OF.items():
        load_config(stage, EXAMPLES / name)


@pytest.mark.parametrize("name", ["generate.toml", "generate_2d.toml"])
def test_generate_examples_run(name, tmp_path, model_dir, dataset_file):
    cfg = load_config(GenerateConfig, EXAMPLES / name, [
        f"model.name={model_dir}", f"data.path={dataset_file}", "data.context_size=32",
        "data.max_tokens=2048", f"output_dir={tmp_path}", "progress=false",
    ])
    result = generate(cfg)
    for hook, path in result.caches.items():
        assert read_manifest(path).layout == cfg.layout


@pytest.mark.slow
def test_tiny_lm_example_runs(tmp_path, text_docs):
    from lm_saes.models.tiny_lm import pretrain

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("\n\n".join(text_docs[:20]))
    cfg = load_config(PretrainConfig, EXAMPLES / "tiny_lm.toml", [
        f"output_dir={tmp_path / 'lm'}", f"corpus={corpus}", "steps=3", "d_model=32", "n_layer=1",
        "vocab_size=300", "context_size=32", "batch_size=4",
    ])
    result = pretrain(cfg)
    assert (result.model_dir / "config.json").is_file() and result.steps == 3
