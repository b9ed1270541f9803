"""Two SPD decompositions of the same model compared module by module.

For every decomposed matrix, three comparisons of the subcomponents (``similarity.py``): by the
rank-one matrix V[:, c] U[c, :] ("weight"), by U alone and by V alone. With ``live_only``, a
subcomponent counts when its causal importance exceeded the threshold on some of ``examples``
inputs of the target (drawn as its evaluation draws them; a toy's single-feature inputs too).
"""

from __future__ import annotations

import itertools
import json

import torch
from jaxtyping import Bool
from torch import Tensor

from lm_saes.compare.config import CompareConfig
from lm_saes.compare.similarity import Comparison, compare, factor_similarities, kept, rank_one_similarities
from lm_saes.errors import ConfigError
from lm_saes.spd.directory import CONFIG_NAME, Decomposition, load_decomposition
from lm_saes.spd.sampling import SINGLE

SHAPE_FIELDS = ("kind", "d_in", "d_out")  # what two decompositions of one model share per matrix


def check_same_model(cfg: CompareConfig) -> None:
    """Both decompose the same matrices with the same shapes (read from config.json, before loading)."""
    modules = {path: json.loads((path / CONFIG_NAME).read_text())["modules"] for path in (cfg.a, cfg.b)}
    a, b = modules[cfg.a], modules[cfg.b]
    if set(a) != set(b):
        only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
        raise ConfigError(f"{cfg.a} and {cfg.b} decompose different models or modules (only in the first: "
                          f"{only_a or 'none'}; only in the second: {only_b or 'none'}); compare decompositions of "
                          "the same target's matrices")
    shapes = {name: [tuple(m[f] for f in SHAPE_FIELDS) for m in (a[name], b[name])] for name in a}
    differ = [f"{name} {s[0][1]}x{s[0][2]} vs {s[1][1]}x{s[1][2]}" for name, s in shapes.items() if s[0] != s[1]]
    if differ:
        raise ConfigError(f"{cfg.a} and {cfg.b} decompose matrices of different shapes ({'; '.join(differ)}): "
                          "they are decompositions of different models")


def compare_decompositions(cfg: CompareConfig, device: torch.device) -> dict[str, dict[str, Comparison]]:
    """{module: {"weight" | "U" | "V": comparison}} for every decomposed matrix."""
    check_same_model(cfg)
    a, b = load_decomposition(cfg.a, device), load_decomposition(cfg.b, device)
    keep_a = live_subcomponents(a, cfg) if cfg.live_only else None
    keep_b = live_subcomponents(b, cfg) if cfg.live_only else None
    out = {}
    for module in a.modules:
        sa, sb = a.subcomponents(module), b.subcomponents(module)
        index_a = kept(keep_a[module] if keep_a else None, sa.V.shape[1])
        index_b = kept(keep_b[module] if keep_b else None, sb.V.shape[1])
        V_a, U_a = sa.V[:, index_a].float(), sa.U[index_a].float()  # [d_in, n_a], [n_a, d_out]
        V_b, U_b = sb.V[:, index_b].float(), sb.U[index_b].float()
        similarities = {"weight": rank_one_similarities(V_a, U_a, V_b, U_b), "U": factor_similarities(U_a, U_b),
                        "V": factor_similarities(V_a.T, V_b.T)}
        out[module] = {name: compare(s, index_a, index_b, cfg.bins) for name, s in similarities.items()}
    return out


@torch.no_grad()
def live_subcomponents(spd: Decomposition, cfg: CompareConfig) -> dict[str, Bool[Tensor, "C"]]:
    """Per matrix, whether each subcomponent's causal importance exceeded the threshold on some input."""
    threshold = cfg.ci_threshold if cfg.ci_threshold is not None else spd.model.settings.ci_threshold
    device = next(spd.model.parameters()).device
    inputs = (x for x, _ in itertools.islice(spd.target.batches(0, cfg.batch_size, cfg.seed, SINGLE, device),
                                              max(1, cfg.examples // cfg.batch_size)))
    toy = spd.target.toy
    if toy is not None and toy.spec.truth is not None:  # a toy's single-feature inputs are inputs too
        inputs = itertools.chain(inputs, [toy.spec.truth(toy.config).single_features.to(device)])
    peak: dict[str, Tensor] = {}
    for x in inputs:
        for name, g in spd.causal_importances(x).items():
            top = g.flatten(0, -2).amax(0)  # [C]
            peak[name] = torch.maximum(peak[name], top) if name in peak else top
    return {name: (p > threshold).cpu() for name, p in peak.items()}
