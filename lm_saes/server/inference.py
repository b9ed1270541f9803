"""Run a stored dictionary on text: encode it, or steer the model with one feature. The model and
weights load on first use and are kept.

torch, transformers and the model code are imported here lazily, inside the engine's methods, so
that serving the browsing API never pays for them. Generation is :mod:`lm_saes.models.steering`.
"""

from __future__ import annotations

import difflib
import threading
from pathlib import Path
from collections.abc import Callable
from typing import Any, NamedTuple

from lm_saes.data.framing import context_frame
from lm_saes.data.pieces import TokenPieces
from lm_saes.errors import LmSaesError, ModelError
from lm_saes.server.errors import shown

MAX_LOADED = 2  # dictionaries (with their models) kept in memory


class InferenceUnavailable(LmSaesError):
    """The dictionary cannot be run on text (no model source, missing files, unknown hook)."""


class InferenceInputError(LmSaesError):
    """What the client asked for cannot be done with this model (an unknown hook, a feature out of
    range, a strength that overflows): the client's to fix (HTTP 422)."""


class TokenActivations(NamedTuple):
    tokens: list[str]  # each token's piece in context (lm_saes.data.pieces), BOS left out
    token_ids: list[int]
    features: list[list[tuple[int, float]]]  # per token: (feature index, activation), strongest first
    feature_acts: list[float] | None  # per token: the activation of the feature asked for
    truncated: bool  # the text was cut to the model's context length


class Continuation(NamedTuple):
    tokens: list[str]  # each new token's piece in context
    token_ids: list[int]


class Steered(NamedTuple):
    hook: str
    prompt_tokens: list[str]  # the prompt's pieces, BOS left out
    prompt_truncated: bool  # the prompt was cut (from the left) to leave room for the continuation
    continuations: dict[tuple[str, str], Continuation]  # by (steered|unsteered, greedy|sampled)
    stopped: str  # "length" or "time"


class _Loaded(NamedTuple):
    lm: Any  # lm_saes.models.backend.LanguageModel
    dictionary: Any  # lm_saes.dictionaries.Dictionary
    hook: str  # the input hook it encodes
    hook_out: str  # the hook it reconstructs (= hook for an SAE): where its directions live
    n_ctx: int | None


class InferenceEngine:
    """Models and dictionaries by dictionary record, loaded lazily and kept (the newest MAX_LOADED)."""

    def __init__(self, device: str = "auto") -> None:
        self.device = device
        self._loaded: dict[tuple, _Loaded] = {}
        self._lock = threading.Lock()

    def run(self, record: dict, text: str, top: int, feature: int | None = None) -> TokenActivations:
        """The ``top`` most active features (activation > 0) at each token of ``text``, and with
        ``feature`` that feature's activation at every token, from one forward."""
        import torch

        with self._lock:  # one forward at a time: the models are shared
            loaded = self._load(record)
            _check_feature(loaded, feature)
            tok = loaded.lm.tokenizer
            prefix, ids, suffix, truncated = framed(tok, loaded.n_ctx, text, room=0)
            if not ids:
                return TokenActivations([], [], [], [] if feature is not None else None, truncated)
            tokens = torch.tensor([prefix + ids + suffix], dtype=torch.long)  # [1, ctx]
            with torch.inference_mode():
                x = loaded.lm.run_to_hooks(tokens, [loaded.hook], out_dtype=torch.float32)[loaded.hook]
                x = x[0, len(prefix):len(prefix) + len(ids)].to(loaded.dictionary.W_dec.device)  # [n_tokens, d_in]
                acts = loaded.dictionary.encode(x).float().cpu()  # [n_tokens, d_sae]
                values, indices = acts.topk(min(top, acts.shape[-1]), dim=-1)  # [n_tokens, top]
            features = [
                [(i, v) for i, v in zip(row_i, row_v) if v > 0]
                for row_i, row_v in zip(indices.tolist(), values.tolist())
            ]
            chosen = acts[:, feature].tolist() if feature is not None else None
            return TokenActivations(TokenPieces(tok).row(ids), ids, features, chosen, truncated)

    def steer(self, record: dict, feature: int, prompt: str, mode: str, strength: float, max_new_tokens: int,
              temperature: float, seed: int, timeout_s: float, hook: str | None = None) -> Steered:
        """Continue ``prompt`` with and without ``feature``'s decoder direction at ``hook`` (default:
        the dictionary's output hook), greedy and sampled (lm_saes.models.steering)."""
        from lm_saes.models.steering import ROWS, Steering, generate_steered

        with self._lock:
            loaded = self._load(record)
            _check_feature(loaded, feature)
            target = hook or loaded.hook_out
            _check_hook(loaded, target)
            dictionary = loaded.dictionary
            steering = Steering(
                hook=target, direction=dictionary.W_dec[feature].detach(), mode=mode, strength=strength,
                activation=lambda x: dictionary.encode(x.to(dictionary.W_dec.device))[..., feature],
                read_hook=loaded.hook,
            )
            prefix, ids, _, truncated = framed(loaded.lm.tokenizer, loaded.n_ctx, prompt, room=max_new_tokens, keep="end")
            if not ids:
                raise InferenceInputError("the prompt holds no token")
            try:
                out = generate_steered(loaded.lm, prefix + ids, steering, max_new_tokens, temperature, seed, timeout_s)
            except ModelError as e:
                raise InferenceInputError(str(e)) from e
            pieces = TokenPieces(loaded.lm.tokenizer)
            continuations = {row: Continuation(pieces.row(ids + new)[len(ids):], new) for row, new in zip(ROWS, out.ids)}
            return Steered(target, pieces.row(ids), truncated, continuations, out.stopped)

    def using(self, key: tuple, load: Callable[[], Any], run: Callable[[Any], Any]) -> Any:
        """``run(loaded)`` under the engine's lock, ``loaded`` kept under ``key`` (its first element the
        record's name) and loaded by ``load()`` on first use: another model kind's entry point
        (lm_saes.server.spd_inference)."""
        with self._lock:
            if key not in self._loaded:
                self._keep(key, load())
            return run(self._loaded[key])

    def _load(self, record: dict) -> _Loaded:
        key = (record["name"], record.get("path"), record.get("updated_at"), "dictionary")
        if key in self._loaded:
            return self._loaded[key]
        return self._keep(key, _load(record, self.device))

    def _keep(self, key: tuple, loaded: Any) -> Any:
        """Keep ``loaded`` (the newest MAX_LOADED), replacing an older load of the same record."""
        self._loaded = {k: v for k, v in self._loaded.items() if k[0] != key[0]}
        while len(self._loaded) >= MAX_LOADED:
            self._loaded.pop(next(iter(self._loaded)))
        self._loaded[key] = loaded
        return loaded


def framed(tok: Any, n_ctx: int | None, text: str, room: int, keep: str = "start") -> tuple[list[int], list[int], list[int], bool]:
    """(prefix, text ids, suffix, truncated): ``text`` tokenized and framed as the model expects
    ([BOS] text, or [CLS] text [SEP]; no suffix when ``room`` is left for generation), cut to the
    model's context (``n_ctx``) less ``room`` tokens, keeping its ``keep`` ("start" or "end")."""
    ids = list(tok(text, add_special_tokens=False)["input_ids"])
    frame = context_frame(tok)
    prefix, suffix = list(frame.start), [] if room else list(frame.end)
    limit = n_ctx - len(prefix) - len(suffix) - room if n_ctx else None
    if limit is not None and limit < 1:
        raise InferenceInputError(f"the model's context ({n_ctx} tokens) leaves no room for a prompt "
                                  f"and {room} new tokens; ask for fewer")
    truncated = limit is not None and len(ids) > limit
    if truncated:
        ids = ids[len(ids) - limit:] if keep == "end" else ids[:limit]
    return prefix, ids, suffix, truncated


def _check_feature(loaded: _Loaded, feature: int | None) -> None:
    d_sae = loaded.dictionary.d_sae
    if feature is not None and not 0 <= feature < d_sae:
        raise InferenceInputError(f"feature {feature} is out of range: the dictionary has features 0-{d_sae - 1}")


def _check_hook(loaded: _Loaded, hook: str) -> None:
    """``hook`` is a hook point of the model whose activations have the width of the decoder's rows."""
    lm, width = loaded.lm, loaded.dictionary.W_dec.shape[-1]
    if hook not in lm.bridge.hook_dict:
        close = difflib.get_close_matches(hook, lm.hook_names(), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; the dictionary's own is {loaded.hook_out!r}"
        raise InferenceInputError(f"hook {shown(hook)} is not a hook point of the model{hint}")
    try:
        found = lm.hook_widths([hook])[hook]
    except ModelError as e:
        raise InferenceInputError(f"hook {shown(hook)} gives no [batch, ctx, d] activation to steer") from e
    if found != width:
        raise InferenceInputError(f"hook {shown(hook)} has width {found}, the feature's direction {width}")


def model_source(record: dict) -> str | None:
    """Where the dictionary's model loads from: ``source.model`` as `lm-saes analyze` stores it (an
    absolute directory, or a hub name). A relative directory, as records written before paths were
    stored absolute hold, is looked for from the working directory, then from each folder above the
    dictionary's directory (the analysis ran in one of them); not found, it is kept as a hub name."""
    model = (record.get("source") or {}).get("model")
    if not model or Path(model).is_absolute():
        return model
    bases = [Path.cwd(), *Path(record.get("path") or "/").parents]
    return next((str(base / model) for base in bases if (base / model / "config.json").is_file()), model)


def _load(record: dict, device: str) -> _Loaded:
    """Load the model and the dictionary. Error messages name the model by its last path component
    (they become HTTP bodies, which carry no filesystem path); the cause goes to the server log."""
    name = record["name"]
    source = record.get("source") or {}
    model, hook, path = model_source(record), source.get("hook_in"), record.get("path")
    hook_out = source.get("hook_out") or hook
    if not model or not hook:
        raise InferenceUnavailable(
            f"dictionary {name!r} names no source model and input hook (source.model / source.hook_in); "
            "it cannot be run on text"
        )
    if not path:
        raise InferenceUnavailable(f"dictionary {name!r} has no 'path' to its weights in the store")

    from lm_saes.config import ModelConfig
    from lm_saes.dictionaries import Dictionary
    from lm_saes.models.backend import load_language_model

    label = repr(Path(model).name if Path(model).is_absolute() else model)
    try:
        lm = load_language_model(ModelConfig(name=model, device=device))
    except (LmSaesError, OSError, ValueError) as e:
        raise InferenceUnavailable(f"dictionary {name!r}: cannot load its model {label}") from e
    for which, point in (("input", hook), ("output", hook_out)):
        try:
            lm.check_hooks([point])
        except LmSaesError as e:
            raise InferenceUnavailable(f"dictionary {name!r}: its {which} hook {point!r} is not in model {label}") from e
    try:
        dictionary = Dictionary.from_pretrained(path, device=lm.device)
    except (LmSaesError, OSError, ValueError) as e:
        raise InferenceUnavailable(f"dictionary {name!r}: cannot load its weights (its directory "
                                   f"{Path(path).name!r} is missing or damaged)") from e
    n_ctx = getattr(getattr(lm.bridge, "cfg", None), "n_ctx", None)
    return _Loaded(lm, dictionary, hook, hook_out, int(n_ctx) if n_ctx else None)
