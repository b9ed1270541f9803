"""Encode a text with a stored dictionary: its model and weights loaded on first use, then cached.

torch, transformers and the model code are imported here lazily, inside :meth:`InferenceEngine.run`,
so that serving the browsing API never pays for them.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, NamedTuple

from lm_saes.data.framing import context_frame
from lm_saes.data.pieces import TokenPieces
from lm_saes.errors import LmSaesError

MAX_LOADED = 2  # dictionaries (with their models) kept in memory


class InferenceUnavailable(LmSaesError):
    """The dictionary cannot be run on text (no model source, missing files, unknown hook)."""


class TokenActivations(NamedTuple):
    tokens: list[str]  # each token decoded on its own, BOS left out
    features: list[list[tuple[int, float]]]  # per token: (feature index, activation), strongest first
    truncated: bool  # the text was cut to the model's context length


class _Loaded(NamedTuple):
    lm: Any  # lm_saes.models.backend.LanguageModel
    dictionary: Any  # lm_saes.dictionaries.Dictionary
    hook: str
    n_ctx: int | None


class InferenceEngine:
    """Models and dictionaries by dictionary record, loaded lazily and kept (the newest MAX_LOADED)."""

    def __init__(self, device: str = "auto") -> None:
        self.device = device
        self._loaded: dict[tuple, _Loaded] = {}
        self._lock = threading.Lock()

    def run(self, record: dict, text: str, top: int) -> TokenActivations:
        """The ``top`` most active features (activation > 0) at each token of ``text``."""
        import torch

        with self._lock:  # one forward at a time: the models are shared
            loaded = self._load(record)
            tok = loaded.lm.tokenizer
            ids = list(tok(text, add_special_tokens=False)["input_ids"])
            frame = context_frame(tok)  # [BOS] text, or [CLS] text [SEP]: as the model expects
            prefix, suffix = list(frame.start), list(frame.end)
            limit = loaded.n_ctx - len(prefix) - len(suffix) if loaded.n_ctx else None
            truncated = limit is not None and len(ids) > limit
            ids = ids[:limit] if truncated else ids
            if not ids:
                return TokenActivations([], [], truncated)
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
            return TokenActivations(TokenPieces(tok).row(ids), features, truncated)

    def _load(self, record: dict) -> _Loaded:
        key = (record["name"], record.get("path"), record.get("updated_at"))
        if key in self._loaded:
            return self._loaded[key]
        loaded = _load(record, self.device)
        self._loaded = {k: v for k, v in self._loaded.items() if k[0] != record["name"]}
        while len(self._loaded) >= MAX_LOADED:
            self._loaded.pop(next(iter(self._loaded)))
        self._loaded[key] = loaded
        return loaded


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
    model, hook, path = model_source(record), (record.get("source") or {}).get("hook_in"), record.get("path")
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
    try:
        lm.check_hooks([hook])
    except LmSaesError as e:
        raise InferenceUnavailable(f"dictionary {name!r}: its input hook {hook!r} is not in model {label}") from e
    try:
        dictionary = Dictionary.from_pretrained(path, device=lm.device)
    except (LmSaesError, OSError, ValueError) as e:
        raise InferenceUnavailable(f"dictionary {name!r}: cannot load its weights (its directory "
                                   f"{Path(path).name!r} is missing or damaged)") from e
    n_ctx = getattr(getattr(lm.bridge, "cfg", None), "n_ctx", None)
    return _Loaded(lm, dictionary, hook, int(n_ctx) if n_ctx else None)
