"""`lm-saes analyze` into the embedded store, then `lm-saes show`, end to end on real parts: a
real 2d cache, a trained dictionary, the embedded nx-27017 server over pymongo."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from lm_saes.analysis.show import render_feature
from lm_saes.analysis.stage import absolute_paths, run_analysis
from lm_saes.cli import main
from lm_saes.config import AnalyzeConfig, StoreConfig
from lm_saes.dictionaries.base import CONFIG_NAME
from lm_saes.store import open_store, server_state


@pytest.fixture()
def cfg(tmp_path, cache_dir, dictionary_dir, monkeypatch) -> AnalyzeConfig:
    monkeypatch.delenv("MONGO_URI", raising=False)
    return AnalyzeConfig(dictionary=dictionary_dir, cache=cache_dir, dictionary_name="tiny-sae", top_k=5,
                         window=3, n_bands=3, per_band=2, device="cpu", progress=False,
                         store=StoreConfig(data_dir=tmp_path / "store"))


def test_analysis_lands_in_the_store_and_replaces_itself(cfg, truth):
    first = run_analysis(cfg)
    assert first.n_features == truth.acts.shape[-1]
    assert server_state(cfg.store.data_dir) is None  # the last client stopped the embedded server
    second = run_analysis(cfg)  # re-running replaces: still one complete copy
    with open_store(cfg.store) as store:
        runs = store.analyses("tiny-sae")
        assert [r["status"] for r in runs] == ["complete"]
        dictionary = store.dictionary("tiny-sae")
        assert dictionary["kind"] == "topk" and dictionary["metrics"]["final_batch"]["l0"] > 0
        assert store.count_features("tiny-sae") == second.n_features
        fired = truth.acts.gt(0).sum((0, 1))  # [d_sae] tokens each feature fired on
        best = int(fired.argmax())
        doc = store.feature("tiny-sae", best)
        assert doc["n_fired"] == int(fired[best])
        assert doc["max_activation"] == pytest.approx(float(truth.acts[..., best].max()), rel=1e-5)
        densest = store.features("tiny-sae", sort="density", descending=True, limit=1)[0]
        assert densest["density"] == pytest.approx(float(fired.max()) / int(truth.analyzed.sum()))


def test_show_prints_a_feature_and_the_densest_list(cfg, truth, capsys):
    run_analysis(cfg)
    capsys.readouterr()
    feature = int(truth.acts.gt(0).sum((0, 1)).argmax())
    store_args = ["--set", f"data_dir={cfg.store.data_dir}"]
    assert main(["show", "tiny-sae", str(feature), "--color", "never", *store_args]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"tiny-sae feature {feature}: density")
    with open_store(cfg.store) as store:
        doc = store.feature("tiny-sae", feature)
    peak = doc["top_contexts"][0]
    assert f"{peak['max']:8.3f}" in printed and "[[" in printed
    assert printed.strip() == render_feature(doc, "tiny-sae", 10, color=False)
    assert main(["show", "tiny-sae", *store_args]) == 0
    assert "the 20 densest" in capsys.readouterr().out
    assert main(["show", "tiny-sae", "--limit", "3", *store_args]) == 0
    assert "the 3 densest" in capsys.readouterr().out
    assert main(["show", "nope", *store_args]) == 2
    assert "no dictionary 'nope'" in capsys.readouterr().err


def test_highlight_marks_active_tokens_in_proportion():
    from lm_saes.analysis.show import highlight

    plain = highlight([" a", " b", "\n"], [0.0, 2.0, 1.0], 2.0, color=False)
    assert plain == " a[[ b]](2.00)[[\u21b5]](1.00)"
    colored = highlight([" a", " b"], [0.0, 2.0], 2.0, color=True)
    assert colored.startswith(" a\033[48;5;202m")  # the maximum gets the strongest shade


def test_analysis_into_an_external_server_given_by_mongo_uri(cfg, tmp_path):
    from lm_saes.store import acquire_server, release_server

    lease = acquire_server(tmp_path / "external", start_timeout_s=60)  # stands in for a real MongoDB
    try:
        external = cfg.model_copy(update={"store": StoreConfig(mongo_uri=lease.uri, data_dir=tmp_path / "unused")})
        stored = run_analysis(external)
        with open_store(external.store) as store:
            assert store.count_features("tiny-sae") == stored.n_features
        assert not (tmp_path / "unused").exists()  # no embedded server was started
    finally:
        release_server(lease)


def test_the_store_records_local_paths_absolute(cfg, dictionary_dir, model_dir, tmp_path, monkeypatch):
    """A dictionary trained with relative paths (`model.name = "tiny"` run from the model's parent)
    is stored with absolute ones, so a server started in any directory finds the model; a hub name
    is kept as it is."""
    copy = tmp_path / "sae"
    shutil.copytree(dictionary_dir, copy)
    meta = json.loads((copy / CONFIG_NAME).read_text())
    meta["source"].update(model=model_dir.name, cache=os.path.relpath(cfg.cache, model_dir.parent))
    (copy / CONFIG_NAME).write_text(json.dumps(meta))
    monkeypatch.chdir(model_dir.parent)
    run_analysis(cfg.model_copy(update={"dictionary": copy}))
    with open_store(cfg.store) as store:
        source = store.dictionary("tiny-sae")["source"]
    assert source["model"] == str(model_dir.resolve()) and source["cache"] == str(cfg.cache.resolve())
    assert absolute_paths({"model": "gpt2", "hook_in": "blocks.0.hook_resid_pre"})["model"] == "gpt2"


def test_a_second_dictionary_under_a_taken_name_is_refused_with_the_fix(cfg, dictionary_dir, tmp_path, capsys):
    import shutil

    first = cfg.model_copy(update={"dictionary_name": None})  # stored as its directory's name, "sae"
    run_analysis(first)
    other = tmp_path / "other" / dictionary_dir.name
    shutil.copytree(dictionary_dir, other)
    args = ["analyze", "--set", f"dictionary={other}", "--set", f"cache={cfg.cache}", "--set", "device=cpu",
            "--set", f"store.data_dir={cfg.store.data_dir}", "--set", "progress=false", "--set", "n_bands=0"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"already holds a dictionary named 'sae', from {dictionary_dir.resolve()}" in err
    assert "--set dictionary_name=other-sae" in err and "--set replace_stored=true" in err
    with open_store(cfg.store) as store:
        assert store.dictionary("sae")["path"] == str(dictionary_dir.resolve())
    assert main([*args, "--set", "dictionary_name=other-sae"]) == 0  # the fix it names
    with open_store(cfg.store) as store:
        assert {d["name"]: d["path"] for d in store.dictionaries()} == {
            "sae": str(dictionary_dir.resolve()), "other-sae": str(other.resolve())}
