"""SAELens interop: export a dictionary to SAELens 6.x's directory layout, and load one back.

SAELens (>= 6.0) keeps a dictionary as ``cfg.json`` (``architecture``, ``d_in``, ``d_sae``,
``apply_b_dec_to_input``, ``normalize_activations``, ..., ``metadata``) beside
``sae_weights.safetensors`` (W_enc [d_in, d_sae], b_enc, W_dec [d_sae, d_out], b_dec, and a
per-feature ``threshold`` for JumpReLU). Its inference maths for an architecture's activation σ:

    pre   = (x - apply_b_dec_to_input * b_dec) @ W_enc + b_enc
    acts  = σ(pre)
    recon = acts @ W_dec + b_dec

The variants map one to one, with the same numbers in and out:

    lm-saes              SAELens                 σ
    relu SAE             "standard"              ReLU
    topk SAE             "topk"                  ReLU of each token's k largest (rescale_acts_by_decoder_norm off)
    jumprelu SAE         "jumprelu"              ReLU(pre) 1{pre > θ}; ours is pre 1{pre > θ}: equal for θ >= 0
    batchtopk SAE        "jumprelu"              SAELens saves a BatchTopK SAE for inference as a JumpReLU whose
                                                 threshold repeats one value per feature, with
                                                 metadata.training_architecture = "batchtopk"
    relu transcoder      "transcoder"            ReLU, apply_b_dec_to_input false (SAELens requires it)
    jumprelu, batchtopk  "jumprelu_transcoder"
    transcoder
    topk transcoder      refused: SAELens 6.54 has no TopK transcoder

Loading folds the SAELens options that lm-saes dictionaries lack into the weights, exactly:

    apply_b_dec_to_input false (an SAE):  b_enc' = b_enc + b_dec W_enc      (ours always centres)
    rescale_acts_by_decoder_norm (TopK):  n = ||W_dec,i||, W_enc' = W_enc n, b_enc' = b_enc n, W_dec' = W_dec / n
    normalize_activations = "expected_average_only_in", factor s:  W_enc' = s W_enc, W_dec' = W_dec / s,
                                          b_dec' = b_dec / s (SAELens's fold_activation_norm_scaling_factor)
    JumpReLU thresholds θ <= 0 gate like θ = 0, so θ' = max(θ, 0) (log_threshold -inf where θ' = 0)

It also reads "batchtopk" training checkpoints (a scalar ``topk_threshold``) and pre-6.0 configs,
and refuses, naming the field, what a fixed linear map cannot represent (per-token normalisation,
hook_z reshaping, gated, skip and other architectures). Training knobs SAELens does not record
(e.g. the L1 coefficient of an imported SAE) get placeholder values: they matter only for resuming
training. sae-lens itself is never imported here.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import Tensor

from lm_saes import __version__
from lm_saes.artifacts import claim, write_safetensors
from lm_saes.config import DictionaryConfig
from lm_saes.dictionaries.base import CONFIG_NAME, Dictionary, check_finite, shape_mismatches
from lm_saes.errors import LmSaesError

SAELENS_CFG = "cfg.json"
SAELENS_WEIGHTS = "sae_weights.safetensors"
SAELENS_SCALER = "activation_scaler.json"  # written beside training checkpoints; holds the norm factor
SAELENS_VERSION = "6.54.12"  # the SAELens release whose layout is written (and read back)
SAELENS_DICTIONARY = "saelens_dictionary"  # the artifact kind of an export directory

# SAELens architecture -> (lm-saes kind, transcoder, the extra weight it carries)
ARCHITECTURES: dict[str, tuple[str, bool, str | None]] = {
    "standard": ("relu", False, None),
    "topk": ("topk", False, None),
    "jumprelu": ("jumprelu", False, "threshold"),
    "batchtopk": ("batchtopk", False, "topk_threshold"),  # a training checkpoint
    "transcoder": ("relu", True, None),
    "jumprelu_transcoder": ("jumprelu", True, "threshold"),
}
UNSUPPORTED = {  # why an architecture has no lm-saes counterpart
    "gated": "its gate and magnitude paths use separate biases",
    "abstopk": "it keeps the k largest |pre| and lets them be negative",
    "skip_transcoder": "it adds a skip connection W_skip x that lm-saes transcoders lack",
    "jumprelu_skip_transcoder": "it adds a skip connection W_skip x that lm-saes transcoders lack",
    "matryoshka_batchtopk": "save it for inference first (save_inference_model writes a JumpReLU)",
    "matching_pursuit": "its encoder is iterative, not one linear map",
    "temporal": "it attends over previous tokens",
}


class SAELensFormatError(LmSaesError):
    """A SAELens directory cannot be read, or a dictionary has no SAELens counterpart."""


# --- export ---------------------------------------------------------------------------------


def export_saelens(
    dictionary: Dictionary | str | Path, out_dir: str | Path,
    source: dict[str, Any] | None = None, overwrite: bool = False,
) -> Path:
    """Write ``dictionary`` (or a dictionary directory) as SAELens's ``cfg.json`` + ``sae_weights.safetensors``.

    ``source`` ({"model", "hook_in", "hook_out"}) fills SAELens's metadata (model_name, hook_name,
    hook_name_out); for a directory it defaults to the ``source`` of its ``config.json``. The
    training scales are folded in, so the SAELens copy works on raw activations.
    """
    origin = None
    if not isinstance(dictionary, Dictionary):
        directory = Path(dictionary)
        origin = str(directory.resolve())
        dictionary = Dictionary.from_pretrained(directory)
        if source is None and (directory / CONFIG_NAME).is_file():
            source = json.loads((directory / CONFIG_NAME).read_text()).get("source")
    source = source or {}
    out_dir = Path(out_dir)
    if not overwrite and any((out_dir / name).exists() for name in (SAELENS_CFG, SAELENS_WEIGHTS)):
        raise SAELensFormatError(f"{out_dir} already holds a SAELens dictionary; pass overwrite=True "
                                 "(--overwrite) or choose another directory")
    kind, d = dictionary.kind, dictionary
    if kind == "topk" and d.transcoder:
        raise SAELensFormatError(
            "SAELens 6.54 has no TopK transcoder (its transcoders are 'transcoder', a ReLU, and "
            "'jumprelu_transcoder'), so this dictionary cannot be exported; export a TopK SAE, or "
            "train the transcoder as relu, jumprelu or batchtopk"
        )
    if d.cfg.normalize_tokens:
        raise SAELensFormatError(
            "this dictionary scales each token to norm sqrt(d_in) (normalize_tokens = true, BatchTopK's "
            "default), which SAELens cannot represent (its 'layer_norm' also centres each token), so it "
            "cannot be exported; train it with normalize_tokens = false to export it"
        )
    state = d.folded_state_dict()
    weights = {name: state[name] for name in ("W_enc", "b_enc", "W_dec", "b_dec")}
    cfg: dict[str, Any] = {}
    metadata: dict[str, Any] = {}
    if kind == "relu":
        architecture = "transcoder" if d.transcoder else "standard"
    elif kind == "topk":
        architecture = "topk"
        cfg.update(k=d.cfg.k, rescale_acts_by_decoder_norm=False)
    else:  # jumprelu, and batchtopk as SAELens saves it for inference: one threshold for every feature
        architecture = "jumprelu_transcoder" if d.transcoder else "jumprelu"
        if kind == "batchtopk":
            weights["threshold"] = state["threshold"].expand(d.d_sae)
            metadata.update(training_architecture="batchtopk", training_architecture_details={"k": d.cfg.k})
        else:
            weights["threshold"] = state["log_threshold"].exp()
    if d.transcoder:
        cfg["d_out"] = d.d_out
        metadata["hook_name_out"] = source.get("hook_out")
    cfg = {
        "architecture": architecture, "d_in": d.d_in, "d_sae": d.d_sae, "dtype": "float32", "device": "cpu",
        "apply_b_dec_to_input": not d.transcoder, "normalize_activations": "none",
        "reshape_activations": "none", **cfg,
        "metadata": {
            "sae_lens_version": SAELENS_VERSION, "sae_lens_training_version": None,
            "model_name": source.get("model"), "hook_name": source.get("hook_in"), **metadata,
            "lm_saes": {"version": __version__, "kind": kind, "dictionary": d.cfg.model_dump(mode="json")},
        },
    }
    with claim(out_dir, SAELENS_DICTIONARY, {"dictionary": origin}, replace=overwrite, replace_hint="pass --overwrite",
               legacy=lambda d: {} if is_saelens_dir(d) else None) as output:
        write_safetensors(output.work / SAELENS_WEIGHTS, {k: v.detach().float().contiguous().cpu() for k, v in weights.items()})
        (output.work / SAELENS_CFG).write_text(json.dumps(cfg, indent=2) + "\n")
        output.commit()
    return out_dir


# --- load -----------------------------------------------------------------------------------


def is_saelens_dir(directory: str | Path) -> bool:
    """Whether ``directory`` looks like SAELens's layout (its ``cfg.json`` is there)."""
    return (Path(directory) / SAELENS_CFG).is_file()


def load_saelens(
    directory: str | Path, device: str | torch.device = "cpu", norm_scaling_factor: float | None = None
) -> Dictionary:
    """Load a SAELens directory as the equivalent lm-saes dictionary (eval mode, float32).

    ``norm_scaling_factor`` is the factor s a config with ``normalize_activations =
    "expected_average_only_in"`` multiplies inputs by; by default it comes from the directory's
    ``activation_scaler.json``. It is folded into the weights.
    """
    from lm_saes.dictionaries import build_dictionary

    directory = Path(directory)
    cfg_path, weights_path = directory / SAELENS_CFG, directory / SAELENS_WEIGHTS
    for path in (cfg_path, weights_path):
        if not path.is_file():
            raise SAELensFormatError(f"{directory} is not a SAELens directory: {path.name} is missing")
    try:
        cfg = _upgrade_pre_v6(json.loads(cfg_path.read_text()), cfg_path)
    except ValueError as e:
        raise SAELensFormatError(f"{cfg_path} is not valid JSON: {e}") from e
    try:
        state = {k: v.float() for k, v in load_file(weights_path).items()}
    except Exception as e:
        raise SAELensFormatError(f"{weights_path} is not a readable safetensors file: {e}") from e
    check_finite(state, weights_path)

    architecture = cfg.get("architecture", "standard")
    if architecture not in ARCHITECTURES:
        why = UNSUPPORTED.get(architecture, "lm-saes has no such dictionary")
        raise SAELensFormatError(
            f"{cfg_path}: architecture={architecture!r} cannot be loaded ({why}); lm-saes reads "
            f"the SAELens architectures {', '.join(sorted(ARCHITECTURES))}"
        )
    kind, transcoder, extra = ARCHITECTURES[architecture]
    d_in, d_sae = _int_field(cfg, "d_in", cfg_path), _int_field(cfg, "d_sae", cfg_path)
    d_out = _int_field(cfg, "d_out", cfg_path) if transcoder else d_in
    _check_options(cfg, cfg_path, transcoder)
    state = _check_weights(state, cfg_path, weights_path, d_in, d_sae, d_out, extra)
    scale = _norm_scaling_factor(cfg, directory, norm_scaling_factor)

    # Fold, in this order, each SAELens option into weights that act on raw activations.
    if architecture in ("topk", "batchtopk") and cfg.get("rescale_acts_by_decoder_norm", False):
        norms = state["W_dec"].norm(dim=-1).clamp(min=1e-8)  # [d_sae], clamped as SAELens's fold does
        state.update(W_enc=state["W_enc"] * norms, b_enc=state["b_enc"] * norms,
                     W_dec=state["W_dec"] / norms[:, None])
    if scale is not None:
        state.update(W_enc=state["W_enc"] * scale, W_dec=state["W_dec"] / scale, b_dec=state["b_dec"] / scale)
    if not transcoder and not cfg.get("apply_b_dec_to_input", True):
        state["b_enc"] = state["b_enc"] + state["b_dec"] @ state["W_enc"]

    threshold = state.pop(extra).expand(d_sae) if extra else None  # [d_sae] (a checkpoint's is a scalar)
    kind, k = _resolve_kind(kind, cfg, threshold, d_sae)
    dictionary = build_dictionary(_dictionary_config(kind, cfg, cfg_path, d_sae, k), d_in, d_out, transcoder)
    if kind == "jumprelu":
        state["log_threshold"] = threshold.clamp(min=0).log()  # θ <= 0 gates like θ = 0 (see above)
    elif kind == "batchtopk":
        state["threshold"] = threshold[0].clone()
    state.update(input_scale=torch.tensor(1.0), output_scale=torch.tensor(1.0))
    dictionary.load_state_dict(state)
    return dictionary.to(device).eval()


def saelens_source(directory: str | Path) -> dict[str, Any]:
    """The ``source`` entry (model, hook_in, hook_out) of a SAELens directory's metadata, for ``save``."""
    path = Path(directory) / SAELENS_CFG
    if not path.is_file():
        raise SAELensFormatError(f"{directory} is not a SAELens directory: {SAELENS_CFG} is missing")
    cfg = _upgrade_pre_v6(json.loads(path.read_text()), path)
    meta = cfg.get("metadata") or {}
    hook_out = meta.get("hook_name_out") or meta.get("hook_name")
    return {"model": meta.get("model_name"), "hook_in": meta.get("hook_name"), "hook_out": hook_out}


# --- the pieces of load_saelens ---------------------------------------------------------------


def _upgrade_pre_v6(cfg: dict[str, Any], cfg_path: Path) -> dict[str, Any]:
    """Map a config written by SAELens < 6.0 (flat, no ``architecture``) to the 6.x fields."""
    if not isinstance(cfg, dict) or not isinstance(cfg.get("metadata", {}), dict):
        raise SAELensFormatError(f"{cfg_path} must hold a JSON object whose metadata is an object")
    meta = cfg.get("metadata", {})
    version = str(cfg.get("sae_lens_version") or meta.get("sae_lens_version") or "0")
    if version.split(".")[0].isdigit() and int(version.split(".")[0]) >= 6:
        return cfg
    cfg = {{"hook_point": "hook_name", "activation_fn_str": "activation_fn"}.get(k, k): v for k, v in cfg.items()}
    activation = cfg.get("activation_fn") or "relu"
    if activation == "topk":
        cfg.setdefault("architecture", "topk")
        cfg.setdefault("k", (cfg.get("activation_fn_kwargs") or {}).get("k"))
    elif activation != "relu":
        raise SAELensFormatError(f"{cfg_path}: activation_fn={activation!r} (a SAELens < 6 config) has no "
                                 "lm-saes counterpart; lm-saes reads relu and topk")
    if isinstance(cfg.get("normalize_activations"), bool):
        cfg["normalize_activations"] = "expected_average_only_in" if cfg["normalize_activations"] else "none"
    keys = ("model_name", "hook_name", "hook_name_out", "hook_head_index")
    cfg["metadata"] = {**{k: cfg[k] for k in keys if k in cfg}, **meta}
    return cfg


def _int_field(cfg: dict[str, Any], name: str, cfg_path: Path) -> int:
    value = cfg.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise SAELensFormatError(f"{cfg_path}: {name} must be a positive integer, found {value!r}")
    return value


def _check_options(cfg: dict[str, Any], cfg_path: Path, transcoder: bool) -> None:
    """Refuse the options no fixed linear map reproduces."""
    normalize = cfg.get("normalize_activations") or "none"
    if normalize not in ("none", "expected_average_only_in") or (transcoder and normalize != "none"):
        raise SAELensFormatError(
            f"{cfg_path}: normalize_activations={normalize!r} cannot be represented by an lm-saes "
            "dictionary (only 'none', and 'expected_average_only_in' for an SAE, fold into the weights); "
            "fold it in SAELens first (e.g. fold_activation_whitening) and save with save_model"
        )
    if (cfg.get("reshape_activations") or "none") != "none":
        raise SAELensFormatError(
            f"{cfg_path}: reshape_activations={cfg['reshape_activations']!r}: lm-saes dictionaries read flat "
            "[batch, d_in] activations (its caches hold [batch, ctx, d] hooks), so hook_z SAEs are not loaded"
        )
    if transcoder and cfg.get("apply_b_dec_to_input", False):
        raise SAELensFormatError(f"{cfg_path}: apply_b_dec_to_input=true is invalid for a transcoder "
                                 "(b_dec has the output's width); set it to false")


def _check_weights(
    state: dict[str, Tensor], cfg_path: Path, weights_path: Path,
    d_in: int, d_sae: int, d_out: int, extra: str | None,
) -> dict[str, Tensor]:
    """The weights the config promises, with the shapes it promises (old spellings translated)."""
    if "scaling_factor" in state and torch.all(state["scaling_factor"] == 1):
        del state["scaling_factor"]  # older SAELens wrote an all-ones vector here
    if extra == "threshold" and "log_threshold" in state and "threshold" not in state:
        state["threshold"] = state.pop("log_threshold").exp()  # older JumpReLU checkpoints
    expected = {"W_enc": (d_in, d_sae), "b_enc": (d_sae,), "W_dec": (d_sae, d_out), "b_dec": (d_out,)}
    if extra:
        expected[extra] = () if extra == "topk_threshold" else (d_sae,)
    mismatches = shape_mismatches(expected, state)
    if mismatches:
        raise SAELensFormatError(
            f"{weights_path} does not match {cfg_path.name} ({'; '.join(mismatches)}). Weights beyond "
            "W_enc, b_enc, W_dec, b_dec and the architecture's threshold have no lm-saes counterpart."
        )
    return state


def _norm_scaling_factor(cfg: dict[str, Any], directory: Path, given: float | None) -> float | None:
    """The input factor of "expected_average_only_in": given, or from activation_scaler.json."""
    if (cfg.get("normalize_activations") or "none") == "none":
        if given is not None:
            raise SAELensFormatError(f"norm_scaling_factor={given} was given, but {directory / SAELENS_CFG} "
                                     "has normalize_activations='none'; drop the argument")
        return None
    if given is None and (directory / SAELENS_SCALER).is_file():
        given = json.loads((directory / SAELENS_SCALER).read_text()).get("scaling_factor")
    if not isinstance(given, (int, float)) or not math.isfinite(given) or given <= 0:
        raise SAELensFormatError(
            f"{directory / SAELENS_CFG} has normalize_activations='expected_average_only_in': inputs must "
            f"be multiplied by a factor that neither {SAELENS_SCALER} nor the caller gives (found {given!r}). "
            "Pass norm_scaling_factor= to load_saelens (SAELens's pretrained_saes.yaml lists it for its "
            "releases), or fold it in SAELens (sae.fold_activation_norm_scaling_factor(f); sae.save_model(dir))"
        )
    return float(given)


def _resolve_kind(kind: str, cfg: dict[str, Any], threshold: Tensor | None, d_sae: int) -> tuple[str, int | None]:
    """(kind, k). A JumpReLU whose one shared threshold came from BatchTopK training is BatchTopK again."""
    if kind == "topk":
        return kind, cfg.get("k", 100)  # SAELens's default k when the field is absent
    meta = cfg.get("metadata") or {}
    ours = (meta.get("lm_saes") or {}).get("dictionary") or {}
    if kind == "batchtopk":  # a training checkpoint; SAELens's k may be fractional (an average per token)
        k = cfg.get("k")
    elif kind == "jumprelu" and threshold is not None and bool((threshold == threshold[0]).all()):
        if ours.get("kind") == "batchtopk":
            k = ours.get("k")
        elif meta.get("training_architecture") == "batchtopk":
            k = (meta.get("training_architecture_details") or {}).get("k")
        else:
            return kind, None
    else:
        return kind, None
    if isinstance(k, (int, float)) and float(k).is_integer() and 0 < k <= d_sae:
        return "batchtopk", int(k)
    return "jumprelu", None  # inference is the same: ReLU gated by the shared threshold


def _dictionary_config(
    kind: str, cfg: dict[str, Any], cfg_path: Path, d_sae: int, k: int | None
) -> DictionaryConfig:
    """Our config: the one an lm-saes export recorded, else the knobs SAELens kept, else placeholders."""
    from lm_saes.dictionaries import dictionary_config

    meta = cfg.get("metadata") or {}
    ours = (meta.get("lm_saes") or {}).get("dictionary")
    if isinstance(ours, dict) and ours.get("kind") == kind and ours.get("d_sae") == d_sae:
        data = {**ours, "normalize_tokens": False}  # an export never normalises tokens
    else:  # training checkpoints keep the knobs at the top level, inference saves in the metadata
        knobs = {**(meta.get("training_architecture_details") or {}), **cfg}
        data = {"kind": kind, "d_sae": d_sae, "normalize_tokens": False}  # SAELens inputs: raw, or scaled by a constant
        coefficient = {"relu": "l1_coefficient", "jumprelu": "l0_coefficient"}.get(kind)
        if coefficient:
            value = knobs.get(coefficient)
            data[coefficient] = value if isinstance(value, (int, float)) and value > 0 else 1.0
        if kind == "jumprelu":
            renames = {"jumprelu_bandwidth": "bandwidth", "jumprelu_init_threshold": "initial_threshold"}
            for theirs, name in renames.items():
                if isinstance(knobs.get(theirs), (int, float)) and knobs[theirs] > 0:
                    data[name] = knobs[theirs]
    if k is not None:
        data["k"] = k
    try:
        return dictionary_config(data)
    except ValueError as e:
        raise SAELensFormatError(f"{cfg_path} gives an invalid {kind} dictionary: {e}") from e
