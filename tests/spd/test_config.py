"""`lm-saes train` reads an SPD config when it has an [spd] section; mixed fields and bad values are
one-line errors naming the field and the fix."""

import pytest

from lm_saes.config import TrainConfig
from lm_saes.errors import ConfigError
from lm_saes.spd.config import SPDTrainConfig, validate_train_config


def spd_config(**changes) -> dict:
    return {"output_dir": "out", "steps": 10, "batch_size": 8, "target": {"kind": "toy", "path": "toy"},
            "spd": {"C": 4, "modules": ["linear1"], "importance_coefficient": 1e-3}, **changes}


def test_the_spd_section_picks_the_config():
    assert isinstance(validate_train_config(spd_config()), SPDTrainConfig)
    sae = {"dictionary": {"kind": "topk", "d_sae": 8, "k": 2}, "output_dir": "out", "total_tokens": 100,
           "batch_size": 10}
    assert isinstance(validate_train_config(sae), TrainConfig)


def test_sae_fields_in_an_spd_config_are_named():
    with pytest.raises(ConfigError, match="'dictionary', 'total_tokens' are sparse-dictionary fields, but this config "
                                          "has an \\[spd\\] section .*remove them, or remove \\[spd\\]"):
        validate_train_config(spd_config(dictionary={"kind": "topk", "d_sae": 8, "k": 2}, total_tokens=100))
    with pytest.raises(ConfigError, match="'cache' is a sparse-dictionary field"):
        validate_train_config(spd_config(cache="work/cache/x"))


def test_spd_fields_in_a_dictionary_config_are_named():
    sae = {"dictionary": {"kind": "topk", "d_sae": 8, "k": 2}, "output_dir": "out", "total_tokens": 100,
           "target": {"kind": "toy", "path": "toy"}, "steps": 5}
    with pytest.raises(ConfigError, match="'steps', 'target' are SPD fields, but this config has no \\[spd\\] "
                                          "section .*add \\[spd\\]"):
        validate_train_config(sae)


def test_c_below_one_and_unknown_fields_are_refused():
    bad = spd_config()
    bad["spd"] = {**bad["spd"], "C": 0}
    with pytest.raises(ConfigError, match="C=0: each decomposed matrix needs at least one subcomponent"):
        validate_train_config(bad)
    bad["spd"] = {**bad["spd"], "C": 4, "C_per_module": {"linear1": 0}}
    with pytest.raises(ConfigError, match="C must be at least 1 for every module"):
        validate_train_config(bad)
    typo = spd_config()
    typo["spd"] = {**typo["spd"], "importance_coeficient": 1.0}
    with pytest.raises(ConfigError, match="unknown field 'spd.importance_coeficient'; did you mean 'importance_coefficient'"):
        validate_train_config(typo)
    with pytest.raises(ConfigError, match="target: Input tag 'dragon' .* expected tags: 'toy', 'language_model', 'cache'"):
        validate_train_config(spd_config(target={"kind": "dragon"}))
