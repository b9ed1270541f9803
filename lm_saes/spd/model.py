"""A model with some of its matrices decomposed: any torch module, its matrices found by name.

``ComponentModel(target, settings)`` finds the modules matching ``settings.modules`` (nn.Linear,
Hugging Face Conv1D, nn.Embedding), inserts decomposed identities before those matching
``settings.identity_insertions``, and gives each decomposed matrix its ``Subcomponents`` and
``ImportanceMLPs``. The target's own weights stay frozen and outside the state dict. Each
decomposed module's forward is replaced by one that, per call of ``run``:

- runs the original module when the module has no masks (the target's own forward);
- records its input when ``run`` captures inputs (for the causal importances);
- runs the masked forward (``components.masked_forward``) when it has masks.

The state dict holds ``parts.<key>.V_own / U_own`` and ``importance.<key>.weights.i / biases.i``,
``key`` being the module's name with dots replaced by ``-``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from lm_saes.dictionaries.parallel import SINGLE_DEVICE, Collectives
from lm_saes.errors import ConfigError
from lm_saes.spd.components import (
    IDENTITY, SUPPORTED, Masks, Subcomponents, masked_forward, module_kind, target_matrix,
)
from lm_saes.spd.config import SPDConfig
from lm_saes.spd.importance import CausalImportance, ImportanceMLPs, causal_importance

IDENTITY_SUFFIX = ".pre_identity"  # name of an identity inserted before a module's input


class Decomposed(NamedTuple):
    """One decomposed matrix."""

    name: str  # the module's name, or "<module>.pre_identity" for an inserted identity
    module: str  # the module it belongs to
    kind: str  # linear, conv1d, embedding or identity
    d_in: int
    d_out: int
    C: int  # subcomponents of the whole matrix (a tensor-parallel rank holds a slice)
    tied_to: str | None  # the module whose subcomponents these are, transposed


def key(name: str) -> str:
    """A module name as a ModuleDict key (no dots)."""
    return name.replace(".", "-")


def decomposable_modules(model: nn.Module) -> dict[str, str]:
    """Every module of ``model`` SPD can decompose, with its kind."""
    return {name: kind for name, module in model.named_modules() if name and (kind := module_kind(module))}


def _listing(model: nn.Module) -> str:
    found = decomposable_modules(model)
    return ", ".join(f"{name} ({kind})" for name, kind in found.items()) or "none"


def match_modules(model: nn.Module, patterns: list[str]) -> list[str]:
    """The decomposable modules matching ``patterns``, in the model's order; a pattern matching no
    module, or only modules SPD cannot decompose, is an error naming what there is."""
    named = dict(model.named_modules())
    chosen: set[str] = set()
    for pattern in patterns:
        matched = [n for n in named if n and fnmatch.fnmatchcase(n, pattern)]
        if not matched:
            raise ConfigError(f"spd.modules pattern {pattern!r} matches no module of the model; its decomposable "
                              f"modules are: {_listing(model)}")
        supported = [n for n in matched if module_kind(named[n]) is not None]
        if not supported or (len(matched) == 1 and not any(c in pattern for c in "*?[")):
            unsupported = sorted({type(named[n]).__name__ for n in matched if module_kind(named[n]) is None})
            if unsupported:
                raise ConfigError(f"spd.modules pattern {pattern!r} matches {', '.join(matched[:5])} of type "
                                  f"{', '.join(unsupported)}, which SPD cannot decompose; supported: {SUPPORTED}. "
                                  f"Decomposable modules of the model: {_listing(model)}")
        chosen.update(supported)
    return [n for n in named if n in chosen]


def match_any(model: nn.Module, patterns: list[str], what: str) -> list[str]:
    """Every module (of any type) matching one of ``patterns``; an unmatched pattern is an error."""
    names = [n for n, _ in model.named_modules() if n]
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
            raise ConfigError(f"{what} pattern {pattern!r} matches no module of the model; its modules are: "
                              f"{', '.join(names[:60])}{' ...' if len(names) > 60 else ''}")
    return [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]


def components_of(name: str, settings: SPDConfig) -> int:
    """C of a module: the first ``C_per_module`` pattern it matches, else ``C``."""
    for pattern, c in settings.C_per_module.items():
        if fnmatch.fnmatchcase(name, pattern):
            return c
    return settings.C


def plan_decomposition(model: nn.Module, settings: SPDConfig, widths: Mapping[str, int]) -> list[Decomposed]:
    """What to decompose: the matched matrices and the identities (``widths``: each insertion
    point's input width), checked for tying."""
    named = dict(model.named_modules())
    plan: dict[str, Decomposed] = {}
    for module in match_any(model, settings.identity_insertions, "spd.identity_insertions"):
        d = widths[module]
        name = module + IDENTITY_SUFFIX
        plan[name] = Decomposed(name, module, IDENTITY, d, d, components_of(name, settings), None)
    tied = {b: a for a, b in settings.tie}
    for name in match_modules(model, settings.modules):
        kind = module_kind(named[name])
        d_in, d_out = target_matrix(named[name], kind).shape
        plan[name] = Decomposed(name, name, kind, d_in, d_out, components_of(name, settings), tied.get(name))
    for a, b in settings.tie:
        missing = [n for n in (a, b) if n not in plan]
        if missing:
            raise ConfigError(f"spd.tie names {missing}, which are not decomposed (add them to spd.modules)")
        if (plan[a].d_in, plan[a].d_out, plan[a].C) != (plan[b].d_out, plan[b].d_in, plan[b].C):
            raise ConfigError(f"spd.tie: {b} ({plan[b].d_in} x {plan[b].d_out}, C={plan[b].C}) is not the transpose of "
                              f"{a} ({plan[a].d_in} x {plan[a].d_out}, C={plan[a].C})")
        if plan[a].tied_to is not None:
            raise ConfigError(f"spd.tie: {a} is itself tied to {plan[a].tied_to}; tie every module to the first one")
    order = {n: i for i, n in enumerate(named)}
    ordered = sorted(plan.values(), key=lambda d: (order[d.module], d.kind != IDENTITY))
    for a, b in settings.tie:
        if order[plan[b].module] < order[plan[a].module]:
            raise ConfigError(f"spd.tie: list the earlier module first ({[b, a]}): {b} comes before {a} in the model")
    return ordered


def input_widths(model: nn.Module, modules: list[str], example: Any) -> dict[str, int]:
    """The last dimension of each module's first input, from one forward of ``example``."""
    widths: dict[str, int] = {}
    named = dict(model.named_modules())

    def record(name: str):
        def hook(module: nn.Module, args: tuple) -> None:
            widths.setdefault(name, args[0].shape[-1])

        return hook

    hooks = [named[m].register_forward_pre_hook(record(m)) for m in modules]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for hook in hooks:
            hook.remove()
    return widths


class ComponentModel(nn.Module):
    """The target model with its decomposed matrices (see the module docstring)."""

    def __init__(self, target: nn.Module, settings: SPDConfig, example: Any = None,
                 comm: Collectives = SINGLE_DEVICE) -> None:
        """``example``: one input of the target (needed only for identity insertions, whose widths a
        forward of it measures)."""
        super().__init__()
        object.__setattr__(self, "target", target)  # not a submodule: its weights are not the decomposition's
        target.requires_grad_(False)
        modules = match_any(target, settings.identity_insertions, "spd.identity_insertions")
        widths = input_widths(target, modules, example) if modules else {}
        self.plan = {d.name: d for d in plan_decomposition(target, settings, widths)}
        self.settings, self.comm = settings, comm
        self.parts = nn.ModuleDict()
        self.importance = nn.ModuleDict()
        for d in self.plan.values():  # in the model's order, so the same seed gives the same start
            source = self.parts[key(d.tied_to)] if d.tied_to else None
            self.parts[key(d.name)] = Subcomponents(d.kind, d.d_in, d.d_out, d.C, source)
            self.importance[key(d.name)] = ImportanceMLPs(d.C, settings.importance_hidden)
        self._masks: Mapping[str, Masks] = {}
        self._captured: dict[str, Tensor] | None = None
        self._install()

    # --- the patched forwards -------------------------------------------------------------

    def _install(self) -> None:
        named = dict(self.target.named_modules())
        for module_name in dict.fromkeys(d.module for d in self.plan.values()):
            module = named[module_name]
            inserted = module_name + IDENTITY_SUFFIX
            own = module_name if module_name in self.plan else None
            module.forward = self._patched(module, module.forward, inserted if inserted in self.plan else None, own)

    def remove(self) -> None:
        """Give the target its own forwards back (this decomposition no longer sees its calls)."""
        named = dict(self.target.named_modules())
        for module_name in dict.fromkeys(d.module for d in self.plan.values()):
            named[module_name].__dict__.pop("forward", None)

    def _patched(self, module: nn.Module, original, inserted: str | None, own: str | None):
        def forward(x, *args, **kwargs):
            if inserted is not None:
                x = self._route(inserted, x, None, lambda v: v)
            if own is None:
                return original(x, *args, **kwargs)
            return self._route(own, x, module, lambda v: original(v, *args, **kwargs))

        return forward

    def _route(self, name: str, x: Tensor, module: nn.Module | None, original) -> Tensor:
        if self._captured is not None:
            self._captured[name] = x
        masks = self._masks.get(name)
        if masks is None:
            return original(x)
        bias = getattr(module, "bias", None) if module is not None else None
        return masked_forward(self.parts[key(name)], x, masks, self.weight(name).to(x.device), bias, self.comm)

    # --- what a trainer and a user call ---------------------------------------------------

    def weight(self, name: str) -> Tensor:
        """The target's matrix of a decomposed module, [d_in, d_out] (x @ W orientation)."""
        d = self.plan[name]
        if d.kind == IDENTITY:
            return torch.eye(d.d_in, device=self.parts[key(name)].V.device)
        return target_matrix(self.target.get_submodule(d.module), d.kind)

    def run(self, inputs: Any, masks: Mapping[str, Masks] | None = None) -> Tensor:
        """The target's output with the given modules masked (the others run as they are)."""
        self._masks = masks or {}
        try:
            return model_output(self.target(inputs))
        finally:
            self._masks = {}

    @torch.no_grad()
    def run_capturing(self, inputs: Any) -> tuple[Tensor, dict[str, Tensor]]:
        """The target's own output, and the input every decomposed matrix saw."""
        self._captured = {}
        try:
            return model_output(self.target(inputs)), self._captured
        finally:
            self._captured = None

    def causal_importances(self, inputs: Mapping[str, Tensor]) -> dict[str, CausalImportance]:
        """Each decomposed matrix's causal importances [..., C] given its input."""
        found = {}
        for name, x in inputs.items():
            f = self.importance[key(name)](self.parts[key(name)].inner(x))
            found[name] = causal_importance(f, self.settings.leak)
        return found

    def weight_deltas(self) -> dict[str, Tensor]:
        """W - V U of every decomposed matrix (V U summed over the tensor-parallel ranks)."""
        return {name: self.weight(name) - self.parts[key(name)].product(self.comm) for name in self.plan}

    def component_parameters(self) -> list[nn.Parameter]:
        return list(self.parts.parameters())


def model_output(raw: Any) -> Tensor:
    """A model's output tensor: itself, a Hugging Face output's logits, or a tuple's first."""
    if isinstance(raw, Tensor):
        return raw
    if hasattr(raw, "logits"):
        return raw.logits
    return raw[0]


