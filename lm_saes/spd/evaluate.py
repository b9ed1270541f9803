"""A decomposition's metrics: at the end of training, and by `lm-saes eval` on its directory.

Over ``examples`` inputs of the target (a toy's distribution, the language model's contexts in
a seeded order, or the cached rows), drawn with their own seed:

- ``ci_l0``: subcomponents with causal importance above ``spd.ci_threshold`` per input (per
  token for language models), per matrix and summed; ``alive``: subcomponents above it on some
  input (the toys' single-feature inputs included), per matrix;
- the output of the target with every decomposed matrix replaced by its subcomponents times
  their causal importances (``ci_masked``), times the importances rounded to 0 / 1 at the
  threshold (``rounded``), or all of them (``unmasked``: V U alone, no delta component), against
  the target's output: MSE for toys and cached modules; KL of
  the next-token distributions and cross-entropy of the next token (``ce_clean`` for the target
  itself) for language models;
- ``faithfulness``: mean over the decomposed parameters of (W - V U)^2;
- toys with ground truth: ``mmcs`` / ``ml2r`` per matrix whose axis indexes the true features
  (live subcomponents only) and ``identity_ci_error`` per matrix that should light one
  subcomponent per feature (``metrics.py``).
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from lm_saes.spd.components import Masks
from lm_saes.spd.config import SPDEvalConfig
from lm_saes.spd.losses import faithfulness_loss, output_loss
from lm_saes.spd.metrics import alive_components, feature_match, identity_ci_error
from lm_saes.spd.model import ComponentModel, key
from lm_saes.spd.sampling import SINGLE
from lm_saes.spd.targets import OpenTarget

EVAL_SEED = 1_234_567  # eval batches are not any training step's


@torch.no_grad()
def evaluate_decomposition(model: ComponentModel, target: OpenTarget, examples: int, batch_size: int,
                           device: torch.device, seed: int = EVAL_SEED) -> dict[str, Any]:
    thr = model.settings.ci_threshold
    max_ci = {name: torch.zeros(d.C, device=device) for name, d in model.plan.items()}
    l0 = {name: 0.0 for name in model.plan}
    sums: dict[str, float] = {}
    n_batches = max(1, examples // batch_size)
    seen = 0
    for x, y in itertools.islice(target.batches(0, batch_size, seed, SINGLE, device), n_batches):
        out, inputs = model.run_capturing(x)
        reference = y if y is not None else out
        ci = {name: c.lower for name, c in model.causal_importances(inputs).items()}
        for name, g in ci.items():
            flat = g.flatten(0, -2)  # [rows, C]
            max_ci[name] = torch.maximum(max_ci[name], flat.amax(0))
            l0[name] += float((flat > thr).float().sum(-1).mean())
        masked = {"ci_masked": {n: Masks(g) for n, g in ci.items()},
                  "rounded": {n: Masks((g > thr).to(g.dtype)) for n, g in ci.items()},
                  "unmasked": {n: Masks(torch.ones_like(g)) for n, g in ci.items()}}
        for label, masks in masked.items():
            pred = model.run(x, masks)
            _add(sums, f"{target.output_loss}_{label}", float(output_loss(pred, reference, target.output_loss)))
            if target.output_loss == "kl" and x.dtype == torch.long:  # a language model: next-token CE too
                _add(sums, f"ce_{label}", next_token_ce(pred, x))
        if target.output_loss == "kl" and x.dtype == torch.long:
            _add(sums, "ce_clean", next_token_ce(out, x))
        seen += 1
    results: dict[str, Any] = {"examples": seen * batch_size, **{k: v / seen for k, v in sums.items()}}
    results["faithfulness"] = float(faithfulness_loss(model.weight_deltas()))
    if target.toy is not None and target.toy.spec.truth is not None:
        results.update(ground_truth_metrics(model, target, max_ci, device))
    alive = {name: alive_components(m, thr) for name, m in max_ci.items()}
    results["ci_l0"] = {name: v / seen for name, v in l0.items()}
    results["ci_l0_total"] = sum(results["ci_l0"].values())
    results["alive"] = {name: int(a.sum()) for name, a in alive.items()}
    results["alive_total"] = sum(results["alive"].values())
    return _ordered(results)


def evaluate_directory(cfg: SPDEvalConfig) -> dict[str, Any]:
    """`lm-saes eval` of a decomposition directory: its metrics, merged into metrics.json under "eval"."""
    from lm_saes.evaluation.run import store_eval
    from lm_saes.models.backend import resolve_device
    from lm_saes.spd.directory import load_decomposition

    device = resolve_device(cfg.device)
    spd = load_decomposition(cfg.decomposition, device)
    results = evaluate_decomposition(spd.model, spd.target, cfg.examples, min(cfg.batch_size, cfg.examples), device,
                                     cfg.seed)
    store_eval(cfg.decomposition, results)
    return results


def describe(results: dict[str, Any]) -> list[str]:
    """The metrics as aligned lines (nested per-matrix values as name/matrix)."""
    lines = []
    for name, value in results.items():
        if isinstance(value, dict):
            lines += [f"  {name + '/' + module:<32} {_number(v)}" for module, v in value.items()]
        else:
            lines.append(f"  {name:<32} {_number(value)}")
    return lines


def _number(value: Any) -> str:
    return f"{value:>12.4f}" if isinstance(value, float) else f"{value:>12}"


def ground_truth_metrics(model: ComponentModel, target: OpenTarget, max_ci: dict[str, Tensor],
                         device: torch.device) -> dict[str, Any]:
    """MMCS, ML2R and the identity CI error against the toy's truth (updates ``max_ci`` with the
    single-feature inputs, which are inputs too)."""
    truth = target.toy.spec.truth(target.toy.config)
    thr = model.settings.ci_threshold
    _, inputs = model.run_capturing(truth.single_features.to(device))
    single = {name: c.lower for name, c in model.causal_importances(inputs).items()}
    for name, g in single.items():
        max_ci[name] = torch.maximum(max_ci[name], g.amax(0))
    found: dict[str, Any] = {"mmcs": {}, "ml2r": {}, "identity_ci_error": {}}
    for name, axis in truth.feature_axes.items():
        if name in model.plan:
            parts = model.parts[key(name)]
            match = feature_match(parts.V, parts.U, model.weight(name), axis, alive_components(max_ci[name], thr))
            found["mmcs"][name], found["ml2r"][name] = match.mmcs, match.ml2r
    for name in truth.identity_modules:
        if name in model.plan:
            found["identity_ci_error"][name] = identity_ci_error(single[name], thr)
    return {k: v for k, v in found.items() if v}


def next_token_ce(logits: Tensor, tokens: Tensor) -> float:
    """Mean cross-entropy of each next token."""
    return float(F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), tokens[:, 1:].flatten()))


def _add(sums: dict[str, float], name: str, value: float) -> None:
    sums[name] = sums.get(name, 0.0) + value


def _ordered(results: dict[str, Any]) -> dict[str, Any]:
    first = ["examples", "mmcs", "ml2r", "identity_ci_error", "alive_total", "alive", "ci_l0_total", "ci_l0"]
    return {**{k: results[k] for k in first if k in results}, **{k: v for k, v in results.items() if k not in first}}
