"""Run an SPD decomposition of a language model on text: the causal importance of each
subcomponent of one decomposed matrix at every token (``Decomposition.causal_importances``), for
the decomposition page's live inference. Loaded on first use and kept by the inference engine
(``importances``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

from lm_saes.data.pieces import TokenPieces
from lm_saes.errors import LmSaesError
from lm_saes.server.errors import shown
from lm_saes.server.inference import InferenceInputError, InferenceUnavailable, framed


class LoadedDecomposition(NamedTuple):
    decomposition: Any  # lm_saes.spd.Decomposition
    tokenizer: Any
    n_ctx: int | None  # the context length it was decomposed on


class TokenImportances(NamedTuple):
    tokens: list[str]  # each token's piece in context, framing tokens left out
    token_ids: list[int]
    components: list[list[tuple[int, float]]]  # per token: (component c, g_c) above the threshold, largest first, at most top
    l0: list[int]  # per token: how many of the module's subcomponents are above the threshold
    truncated: bool
    ci_threshold: float  # the threshold the decomposition's model applies


def load_for_text(record: dict, device: str) -> LoadedDecomposition:
    """The decomposition of ``record`` (a store record of kind "decomposition") and its target's
    tokenizer; InferenceUnavailable for a toy's decomposition or missing files (messages name no path)."""
    from lm_saes.config import ModelConfig
    from lm_saes.models.backend import load_tokenizer, resolve_device
    from lm_saes.spd import load_decomposition

    name, path, target = record["name"], record.get("path"), record.get("source") or {}
    if target.get("kind") != "language_model":
        raise InferenceUnavailable(f"decomposition {name!r} decomposes a {target.get('kind', 'non-language')} target: "
                                   "only a language model's decomposition runs on text")
    if not path:
        raise InferenceUnavailable(f"decomposition {name!r} has no 'path' to its directory in the store")
    try:
        decomposition = load_decomposition(path, resolve_device(device))
        tokenizer = load_tokenizer(ModelConfig.model_validate(decomposition.record["target"]["model"]))
    except (LmSaesError, OSError, ValueError) as e:
        raise InferenceUnavailable(f"decomposition {name!r}: cannot load it or its model (its directory "
                                   f"{Path(path).name!r} is missing or damaged)") from e
    context = (decomposition.record["target"].get("data") or {}).get("context_size")
    return LoadedDecomposition(decomposition, tokenizer, int(context) if context else None)


def run_importances(loaded: LoadedDecomposition, text: str, module: str, top: int) -> TokenImportances:
    """``module``'s subcomponents above the decomposition's threshold at each token of ``text`` (one forward)."""
    import torch

    spd = loaded.decomposition
    if module not in spd.modules:
        raise InferenceInputError(f"module {shown(module)} is not decomposed here; decomposed: {', '.join(spd.modules)}")
    prefix, ids, suffix, truncated = framed(loaded.tokenizer, loaded.n_ctx, text, room=0)
    if not ids:
        return TokenImportances([], [], [], [], truncated, spd.model.settings.ci_threshold)
    tokens = torch.tensor([prefix + ids + suffix], dtype=torch.long, device=next(spd.model.parameters()).device)
    with torch.inference_mode():
        ci = spd.causal_importances(tokens)[module][0, len(prefix):len(prefix) + len(ids)].float().cpu()  # [n_tokens, C]
    threshold = spd.model.settings.ci_threshold
    values, order = ci.sort(dim=-1, descending=True, stable=True)  # [n_tokens, C]
    components = [[(c, v) for c, v in zip(row_c[:top], row_v[:top]) if v > threshold]
                  for row_c, row_v in zip(order.tolist(), values.tolist())]
    l0 = (ci > threshold).sum(-1).tolist()
    return TokenImportances(TokenPieces(loaded.tokenizer).row(ids), ids, components, l0, truncated, threshold)


def importances(engine: Any, record: dict, text: str, module: str, top: int) -> TokenImportances:
    """``run_importances`` with the decomposition loaded once and kept by ``engine`` (an InferenceEngine)."""
    key = (record["name"], record.get("path"), record.get("updated_at"), "decomposition")
    return engine.using(key, lambda: load_for_text(record, engine.device),
                        lambda loaded: run_importances(loaded, text, module, top))
