"""InterpretConfig: the lexical default, explainer ids, and mistakes named at the edge."""

from __future__ import annotations

import pytest

from lm_saes.config import load_config
from lm_saes.errors import ConfigError
from lm_saes.interpret.config import InterpretConfig


def test_the_default_is_the_lexical_baseline():
    cfg = load_config(InterpretConfig, None, ["dictionary=topk"])
    assert cfg.explainer.kind == "lexical" and cfg.judge is cfg.explainer and cfg.explainer_id == "lexical"
    assert str(cfg.resolved_output_dir()) == "work/interpret/topk"


def test_explainer_ids_name_the_models():
    model = ["explainer.kind=openai", "explainer.base_url=http://h:1/v1/", "explainer.model=m"]
    cfg = load_config(InterpretConfig, None, ["dictionary=d", *model])
    assert cfg.explainer_id == "openai:m" and cfg.explainer.base_url == "http://h:1/v1"
    mixed = load_config(InterpretConfig, None, ["dictionary=d", *model, "scorer.kind=lexical"])
    assert mixed.explainer_id == "openai:m+lexical" and mixed.judge.kind == "lexical"
    assert load_config(InterpretConfig, None, ["dictionary=d", "name=mine"]).explainer_id == "mine"


@pytest.mark.parametrize("overrides, message", [
    (["explainer.kind=openai", "explainer.model=m", "explainer.base_url=localhost:1"], "must start with http"),
    (["explainer.kind=openai", "explainer.base_url=http://h", "explainer.modle=m"], "did you mean 'model'"),
    (["explain_top=0", "explain_per_band=0"], "the explainer would see no context"),
    (["features=[-1]"], "features.0"),
    (["explainer.kind=gpt"], "explainer"),
    (["baselines=['svd']"], "baselines.0"),
])
def test_mistakes_are_named(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(InterpretConfig, None, ["dictionary=d", *overrides])
