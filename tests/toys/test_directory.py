"""Loading toy directories back, and the errors of directories that are not (finished) toys."""

import json

import pytest

from lm_saes.errors import LmSaesError
from lm_saes.toys.config import ToyTrainConfig
from lm_saes.toys.directory import checkpoint_steps, load_toy
from lm_saes.toys.train import train_toy


@pytest.fixture(scope="module")
def toy_dir(tmp_path_factory):
    cfg = ToyTrainConfig.model_validate({
        "toy": {"kind": "modular_addition", "p": 7, "d_embed": 4, "d_hidden": 4}, "steps": 4, "batch_size": 8,
        "checkpoint_every": 2, "progress": False, "output_dir": tmp_path_factory.mktemp("toy") / "ma"})
    return train_toy(cfg).output_dir


def test_a_toy_loads_with_its_config(toy_dir):
    toy = load_toy(toy_dir)
    assert toy.config.kind == "modular_addition" and toy.config.p == 7 and toy.step is None
    assert checkpoint_steps(toy_dir) == [0, 2, 4]


def test_bad_directories_get_clear_errors(toy_dir, tmp_path):
    with pytest.raises(LmSaesError, match="is not a toy directory.*lm-saes toy"):
        load_toy(tmp_path)
    with pytest.raises(LmSaesError, match=r"step-0000003.safetensors is missing; saved checkpoints: \[0, 2, 4\]"):
        load_toy(toy_dir, step=3)
    record = json.loads((toy_dir / "config.json").read_text())
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({**record, "kind": "dragon"}))
    with pytest.raises(LmSaesError, match=r"names toy kind 'dragon'; known kinds: \['induction', 'modular_addition', "
                       r"'resid_mlp', 'tms'\]"):
        load_toy(other)
    (other / "config.json").write_text(json.dumps(record))
    with pytest.raises(LmSaesError, match="is unfinished"):
        load_toy(other)
