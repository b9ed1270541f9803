"""Config loading: TOML, overrides, and errors that name the field and the fix."""

from pathlib import Path

import pytest

from lm_saes.config import GenerateConfig, PretrainConfig, apply_override, load_config
from lm_saes.errors import ConfigError

GENERATE_TOML = """
hooks = ["blocks.0.hook_resid_post"]
output_dir = "out"
[model]
name = "some/model"
[data]
path = "docs.jsonl"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cfg.toml"
    path.write_text(text)
    return path


def test_loads_toml_with_defaults(tmp_path):
    cfg = load_config(GenerateConfig, write(tmp_path, GENERATE_TOML))
    assert cfg.hooks == ["blocks.0.hook_resid_post"]
    assert cfg.model.dtype == "float32" and cfg.dtype == "bfloat16" and cfg.layout == "1d"
    assert cfg.output_dir == Path("out")


def test_overrides_parse_toml_values_at_any_depth(tmp_path):
    cfg = load_config(
        GenerateConfig, write(tmp_path, GENERATE_TOML),
        ["model.dtype=bfloat16", "data.max_tokens=1000", "data.packing=false",
         'hooks=["a", "b"]', "shard_size_mb=0.5"],
    )
    assert cfg.model.dtype == "bfloat16"
    assert cfg.data.max_tokens == 1000 and cfg.data.packing is False
    assert cfg.hooks == ["a", "b"] and cfg.shard_size_mb == 0.5


def test_unquoted_override_is_a_string():
    data: dict = {}
    apply_override(data, "model.name=/tmp/some dir")
    assert data == {"model": {"name": "/tmp/some dir"}}


def test_unknown_nested_field_names_path_and_closest_name(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(GenerateConfig, write(tmp_path, GENERATE_TOML), ["model.dtpye=bfloat16"])
    message = str(e.value)
    assert "'model.dtpye'" in message and "did you mean 'dtype'" in message
    assert "valid keys here:" in message and "revision" in message


def test_unknown_top_level_field(tmp_path):
    with pytest.raises(ConfigError, match="unknown field 'hook'; did you mean 'hooks'"):
        load_config(GenerateConfig, write(tmp_path, "hook = 'x'\n" + GENERATE_TOML))


def test_wrong_type_and_missing_field_are_named(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(GenerateConfig, write(tmp_path, GENERATE_TOML), ["layout=3d", "batch_size=-1"])
    assert "layout" in str(e.value) and "batch_size" in str(e.value)
    with pytest.raises(ConfigError, match="missing required field 'output_dir'"):
        load_config(GenerateConfig, write(tmp_path, GENERATE_TOML.replace('output_dir = "out"', "")))


def test_cross_field_rule(tmp_path):
    with pytest.raises(ConfigError, match="n_head=3 must divide d_model=128"):
        load_config(PretrainConfig, None, ["output_dir=x", "n_head=3", "d_model=128"])


def test_duplicate_hooks_rejected(tmp_path):
    with pytest.raises(ConfigError, match="listed twice"):
        load_config(GenerateConfig, write(tmp_path, GENERATE_TOML), ['hooks=["a", "a"]'])


def test_missing_file_and_bad_toml(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(GenerateConfig, tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(GenerateConfig, write(tmp_path, "hooks = [unclosed"))


def test_validated_config_is_frozen(tmp_path):
    cfg = load_config(GenerateConfig, write(tmp_path, GENERATE_TOML))
    with pytest.raises(Exception):
        cfg.seed = 3
