"""The package's front door: stage functions load lazily, so light submodules stay light."""

import subprocess
import sys

import pytest

import lm_saes


def test_the_store_and_configs_import_without_torch():
    code = "import sys, lm_saes.store, lm_saes.config; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_exported_names_resolve_and_unknown_ones_fail():
    assert lm_saes.open_cache.__module__ == "lm_saes.activations.reader"
    assert set(lm_saes.__all__) >= {"generate", "train", "evaluate", "Dictionary", "load_config", "run_sweep"}
    assert lm_saes.run_sweep.__module__ == "lm_saes.sweep.run"
    assert lm_saes.run_llc.__module__ == "lm_saes.llc.stage" and lm_saes.train_toy.__module__ == "lm_saes.toys.train"
    assert lm_saes.run_interpret.__module__ == "lm_saes.interpret.stage"
    assert lm_saes.InterpretConfig(dictionary="d").explainer.kind == "lexical"  # the offline default
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        lm_saes.nope  # noqa: B018
