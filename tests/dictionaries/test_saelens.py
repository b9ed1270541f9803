"""SAELens interop (lm_saes/dictionaries/saelens.py), checked against the real sae-lens 6.54.

One run of tests/dictionaries/saelens_peer.py under .venv-peers serves the whole module: it
loads every directory exported here with ``SAE.load_from_disk`` and builds, with random weights,
every kind of SAELens directory loaded here, and runs each on the same inputs. The same input must
give the same feature activations and reconstruction on both sides.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import torch
from safetensors.torch import load_file, save_file

from lm_saes.cli import main
from lm_saes.dictionaries import Dictionary, build_dictionary, dictionary_config
from lm_saes.dictionaries.saelens import (
    SAELENS_CFG, SAELENS_WEIGHTS, SAELensFormatError, export_saelens, load_saelens, saelens_source,
)
from lm_saes.errors import LmSaesError

REPO = Path(__file__).resolve().parents[2]
PEERS_PYTHON = REPO / ".venv-peers" / "bin" / "python"
PEER_SCRIPT = Path(__file__).with_name("saelens_peer.py")
D_IN, D_SAE, D_OUT = 6, 16, 4  # as in saelens_peer.py
SOURCE = {"model": "tiny-gpt2", "hook_in": "blocks.1.hook_resid_mid", "hook_out": "blocks.1.hook_mlp_out"}

EXPORTS = {  # name -> (kind, transcoder, SAELens architecture, SAELens class)
    "relu": ("relu", False, "standard", "StandardSAE"),
    "topk": ("topk", False, "topk", "TopKSAE"),
    "batchtopk": ("batchtopk", False, "jumprelu", "JumpReLUSAE"),
    "jumprelu": ("jumprelu", False, "jumprelu", "JumpReLUSAE"),
    "relu_transcoder": ("relu", True, "transcoder", "Transcoder"),
    "jumprelu_transcoder": ("jumprelu", True, "jumprelu_transcoder", "JumpReLUTranscoder"),
    "batchtopk_transcoder": ("batchtopk", True, "jumprelu_transcoder", "JumpReLUTranscoder"),
}
IMPORTS = {  # saelens_peer.py recipe -> (sub-directories it writes, lm-saes kind, transcoder)
    "standard": ([""], "relu", False),
    "standard_uncentred": ([""], "relu", False),
    "topk_rescaled": ([""], "topk", False),
    "topk_checkpoint": ([""], "topk", False),
    "jumprelu": ([""], "jumprelu", False),
    "batchtopk": (["checkpoint", "inference"], "batchtopk", False),
    "normalized": ([""], "relu", False),
    "pre_v6_topk": ([""], "topk", False),
    "transcoder": ([""], "relu", True),
    "jumprelu_transcoder": ([""], "jumprelu", True),
}
IMPORT_DIRS = [(recipe, sub) for recipe, (subs, _, _) in IMPORTS.items() for sub in subs]


def require_peers(python: Path = PEERS_PYTHON) -> Path:
    """The peers' interpreter; a missing one fails the tests, since interop is then unchecked."""
    if not python.is_file():
        pytest.fail(f"{python} is missing: run `bash scripts/peers.sh` to create .venv-peers "
                    "(sae-lens 6.54 beside lm-saes), then rerun these tests", pytrace=False)
    return python


def random_dictionary(kind: str, transcoder: bool, seed: int) -> Dictionary:
    """A dictionary with random weights, nonzero biases, spread thresholds and training scales != 1."""
    torch.manual_seed(seed)
    knobs = {"relu": {"l1_coefficient": 0.1}, "jumprelu": {"l0_coefficient": 0.1},
             "batchtopk": {"k": 4, "normalize_tokens": False}}.get(kind, {"k": 4})  # exportable: no token scaling
    d = build_dictionary(dictionary_config({"kind": kind, "d_sae": D_SAE, **knobs}), D_IN,
                         D_OUT if transcoder else D_IN, transcoder)
    with torch.no_grad():
        for p in d.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
        if kind == "jumprelu":
            d.log_threshold.copy_((torch.rand(D_SAE) * 0.6 + 0.02).log())
        if kind == "batchtopk":
            d.threshold.fill_(0.3)
    d.set_scales(1.3, 0.9 if transcoder else 1.3)
    return d


def outputs(d: Dictionary, x: torch.Tensor) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        out = d(x)
        return {"acts": out.acts, "recon": d.decode(out.acts), "forward": out.recon}


def assert_same(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor], name: str) -> None:
    for key, value in ours.items():
        torch.testing.assert_close(value, theirs[f"{name}.{key}"], rtol=1e-5, atol=1e-5,
                                   msg=lambda m, key=key: f"{name}.{key}: {m}")
    fired = ours["acts"] != 0
    assert fired.any() and not fired.all(), "inputs too tame: some features must fire and some not"


class Peer(NamedTuple):
    root: Path
    x: torch.Tensor
    results: dict[str, torch.Tensor]
    report: dict[str, Any]


@pytest.fixture(scope="module")
def peer(tmp_path_factory) -> Peer:
    python = require_peers()
    root = tmp_path_factory.mktemp("saelens")
    for seed, (name, (kind, transcoder, _, _)) in enumerate(EXPORTS.items()):
        random_dictionary(kind, transcoder, seed).save(root / "ours" / name, extra={"source": SOURCE})
        export_saelens(root / "ours" / name, root / "exported" / name)
    x = torch.randn(64, D_IN, generator=torch.Generator().manual_seed(0)) * 1.5
    save_file({"x": x}, root / "inputs.safetensors")
    jobs = {
        "inputs": str(root / "inputs.safetensors"), "outputs": str(root / "outputs.safetensors"),
        "load": [{"name": f"export-{name}", "dir": str(root / "exported" / name), "input": "x"}
                 for name in EXPORTS],
        "create": [{"name": f"import-{recipe}", "recipe": recipe, "dir": str(root / "peer" / recipe), "input": "x"}
                   for recipe in IMPORTS],
    }
    (root / "jobs.json").write_text(json.dumps(jobs))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    run = subprocess.run([str(python), str(PEER_SCRIPT), str(root / "jobs.json")], capture_output=True,
                         text=True, timeout=600, env=env, cwd=root)
    assert run.returncode == 0, f"saelens_peer.py failed:\n{run.stderr[-4000:]}"
    report = json.loads((root / "report.json").read_text())
    return Peer(root, x, load_file(root / "outputs.safetensors"), report)


# --- lm-saes -> SAELens -------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", EXPORTS)
def test_an_exported_dictionary_computes_the_same_in_saelens(peer, name):
    kind, transcoder, architecture, cls = EXPORTS[name]
    assert peer.report[f"export-{name}"] == {"class": cls, "architecture": architecture}
    ours = Dictionary.from_pretrained(peer.root / "ours" / name)
    assert_same(outputs(ours, peer.x), peer.results, f"export-{name}")
    meta = json.loads((peer.root / "exported" / name / SAELENS_CFG).read_text())["metadata"]
    assert (meta["model_name"], meta["hook_name"]) == (SOURCE["model"], SOURCE["hook_in"])
    assert meta.get("hook_name_out") == (SOURCE["hook_out"] if transcoder else None)


@pytest.mark.slow
@pytest.mark.parametrize("name", EXPORTS)
def test_an_export_loads_back_as_the_same_dictionary(peer, name):
    ours = Dictionary.from_pretrained(peer.root / "ours" / name)
    back = Dictionary.from_pretrained(peer.root / "exported" / name)  # the SAELens layout
    assert (back.kind, back.transcoder, back.cfg) == (ours.kind, ours.transcoder, ours.cfg)
    for key, value in outputs(ours, peer.x).items():
        torch.testing.assert_close(outputs(back, peer.x)[key], value, rtol=1e-6, atol=1e-6)


def test_a_topk_transcoder_has_no_saelens_counterpart(tmp_path):
    with pytest.raises(SAELensFormatError, match="SAELens 6.54 has no TopK transcoder"):
        export_saelens(random_dictionary("topk", True, 0), tmp_path / "out")


def test_a_dictionary_that_normalises_tokens_has_no_saelens_counterpart(tmp_path):
    d = build_dictionary(dictionary_config({"kind": "batchtopk", "d_sae": D_SAE, "k": 4}), D_IN, D_IN)
    assert d.cfg.normalize_tokens  # BatchTopK's default
    with pytest.raises(SAELensFormatError, match="normalize_tokens = false to export it"):
        export_saelens(d, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_export_refuses_to_overwrite(tmp_path):
    d = random_dictionary("relu", False, 0)
    export_saelens(d, tmp_path)
    with pytest.raises(SAELensFormatError, match="already holds a SAELens dictionary; pass overwrite=True"):
        export_saelens(d, tmp_path)
    export_saelens(d, tmp_path, overwrite=True)


def test_cli_export(tmp_path, capsys):
    random_dictionary("jumprelu", False, 0).save(tmp_path / "dict", extra={"source": SOURCE})
    assert main(["export", str(tmp_path / "dict"), str(tmp_path / "out")]) == 0
    assert "SAELens 'jumprelu' dictionary" in capsys.readouterr().out
    assert (tmp_path / "out" / SAELENS_WEIGHTS).is_file()
    assert main(["export", str(tmp_path / "nowhere"), str(tmp_path / "out2")]) == 2
    assert "config.json is missing" in capsys.readouterr().err


# --- SAELens -> lm-saes -------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(("recipe", "sub"), IMPORT_DIRS, ids=[f"{r}-{s}" if s else r for r, s in IMPORT_DIRS])
def test_a_saelens_dictionary_computes_the_same_here(peer, recipe, sub):
    _, kind, transcoder = IMPORTS[recipe]
    ours = Dictionary.from_pretrained(peer.root / "peer" / recipe / sub)
    assert (ours.kind, ours.transcoder, ours.training) == (kind, transcoder, False)
    assert_same(outputs(ours, peer.x), peer.results, f"import-{recipe}")


@pytest.mark.slow
def test_the_source_comes_from_saelens_metadata(peer):
    assert saelens_source(peer.root / "peer" / "pre_v6_topk") == {
        "model": "peer-model", "hook_in": "blocks.1.hook_resid_post", "hook_out": "blocks.1.hook_resid_post"}
    assert saelens_source(peer.root / "exported" / "relu_transcoder") == SOURCE


def test_a_norm_factor_given_by_the_caller_is_folded_in(tmp_path):
    d = random_dictionary("relu", False, 0)
    export_saelens(d, tmp_path)
    cfg = json.loads((tmp_path / SAELENS_CFG).read_text())
    (tmp_path / SAELENS_CFG).write_text(json.dumps({**cfg, "normalize_activations": "expected_average_only_in"}))
    with pytest.raises(SAELensFormatError, match="expected_average_only_in.*Pass norm_scaling_factor="):
        Dictionary.from_pretrained(tmp_path)
    loaded = load_saelens(tmp_path, norm_scaling_factor=2.0)
    reference = Dictionary.from_pretrained(d.save(tmp_path / "ours"))  # the trained maths, on 2x
    x = torch.randn(8, D_IN)
    torch.testing.assert_close(loaded(x).recon, reference(2 * x).recon / 2, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(loaded(x).acts, reference(2 * x).acts, rtol=1e-5, atol=1e-5)


# --- bad SAELens directories --------------------------------------------------------------------


@pytest.fixture
def exported(tmp_path) -> Path:
    return export_saelens(random_dictionary("jumprelu", False, 0), tmp_path / "sae")


def edit_cfg(directory: Path, **changes: Any) -> None:
    cfg = json.loads((directory / SAELENS_CFG).read_text())
    (directory / SAELENS_CFG).write_text(json.dumps({**cfg, **changes}))


def test_a_missing_weights_file_is_named(exported):
    (exported / SAELENS_WEIGHTS).unlink()
    with pytest.raises(LmSaesError, match="not a SAELens directory: sae_weights.safetensors is missing"):
        Dictionary.from_pretrained(exported)


@pytest.mark.parametrize(("architecture", "why"), [
    ("gated", "separate biases"), ("skip_transcoder", "skip connection"), ("mystery", "no such dictionary"),
])
def test_an_unsupported_architecture_is_named(exported, architecture, why):
    edit_cfg(exported, architecture=architecture)
    with pytest.raises(LmSaesError, match=f"architecture='{architecture}' cannot be loaded \\(.*{why}"):
        Dictionary.from_pretrained(exported)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("normalize_activations", "layer_norm", "normalize_activations='layer_norm' cannot be represented"),
    ("reshape_activations", "hook_z", "reshape_activations='hook_z'"),
    ("d_in", None, "d_in must be a positive integer, found None"),
    ("d_sae", 12, "sae_weights.safetensors does not match cfg.json .*W_enc: expected \\(6, 12\\)"),
])
def test_a_bad_cfg_field_is_named(exported, field, value, message):
    edit_cfg(exported, **{field: value})
    with pytest.raises(SAELensFormatError, match=message):
        load_saelens(exported)


def test_a_weight_without_counterpart_is_named(exported):
    state = load_file(exported / SAELENS_WEIGHTS)
    save_file({**state, "W_skip": torch.zeros(D_IN, D_IN)}, exported / SAELENS_WEIGHTS)
    with pytest.raises(SAELensFormatError, match="W_skip: expected absent, found \\(6, 6\\)"):
        load_saelens(exported)


def test_missing_peers_fail_with_the_fix(tmp_path):
    with pytest.raises(pytest.fail.Exception, match="run `bash scripts/peers.sh`"):
        require_peers(tmp_path / "python")
