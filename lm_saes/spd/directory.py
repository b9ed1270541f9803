"""The decomposition directory `lm-saes train` writes for an SPD config, and its Python API.

    artifact.json           {"kind": "decomposition", ...} (lm_saes.artifacts)
    config.json             {"format": "spd", "target": {...}, "spd": {...}, "output_loss": "mse" | "kl",
                             "modules": {name: {"module", "kind", "d_in", "d_out", "C", "tied_to"}}}
    weights.safetensors     components.<name>.V [d_in, C], components.<name>.U [C, d_out] for every
                            decomposed matrix (a tied one's are its source's, transposed), and
                            importance.<name>.weight.<i> [C, in, out], importance.<name>.bias.<i> [C, out]
    train_config.json       the resolved SPDTrainConfig
    train_log.jsonl         one record per log_every steps
    metrics.json            written last: the final log record, the schedule, and the evaluation ("eval")

In Python::

    from lm_saes.spd import load_decomposition
    spd = load_decomposition("work/spd/tms_5-2")
    spd.subcomponents("linear1")           # V [d_in, C], U [C, d_out], each subcomponent's matrix
    spd.causal_importances(x)              # {module: [..., C]}
    spd.masked_forward(x, {"linear1": m})  # the target's output with linear1's subcomponents masked
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

import torch
from jaxtyping import Float
from safetensors.torch import load_file
from torch import Tensor

from lm_saes import __version__
from lm_saes.artifacts import read_marker, write_atomic, write_safetensors
from lm_saes.errors import LmSaesError
from lm_saes.spd.components import Masks
from lm_saes.spd.config import SPDConfig, SPDTrainConfig
from lm_saes.spd.model import ComponentModel, key

DECOMPOSITION = "decomposition"  # the artifact kind
FORMAT = "spd"
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "weights.safetensors"
TRAIN_CONFIG_NAME = "train_config.json"
METRICS_NAME = "metrics.json"


def is_decomposition(directory: str | Path) -> bool:
    """Whether ``directory`` holds an SPD decomposition (finished or not)."""
    marker = read_marker(Path(directory))
    if marker is not None:
        return marker["kind"] == DECOMPOSITION
    try:
        return json.loads((Path(directory) / CONFIG_NAME).read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def weights_of(model: ComponentModel, state: dict[str, Tensor]) -> dict[str, Tensor]:
    """The saved tensors from a (gathered) ComponentModel state dict: U and V of every matrix."""
    out = {}
    for name, d in model.plan.items():
        source = key(d.tied_to or name)
        V, U = state[f"parts.{source}.V_own"], state[f"parts.{source}.U_own"]
        V, U = (U.T, V.T) if d.tied_to else (V, U)
        out[f"components.{name}.V"], out[f"components.{name}.U"] = V.contiguous().clone(), U.contiguous().clone()
        for i in range(len(model.settings.importance_hidden) + 1):
            out[f"importance.{name}.weight.{i}"] = state[f"importance.{key(name)}.weights.{i}"].contiguous()
            out[f"importance.{name}.bias.{i}"] = state[f"importance.{key(name)}.biases.{i}"].contiguous()
    return out


def state_of(model: ComponentModel, weights: dict[str, Tensor]) -> dict[str, Tensor]:
    """The ComponentModel state dict from saved tensors (the inverse of ``weights_of``)."""
    state = {}
    for name, d in model.plan.items():
        if not d.tied_to:
            state[f"parts.{key(name)}.V_own"] = weights[f"components.{name}.V"]
            state[f"parts.{key(name)}.U_own"] = weights[f"components.{name}.U"]
        for i in range(len(model.settings.importance_hidden) + 1):
            state[f"importance.{key(name)}.weights.{i}"] = weights[f"importance.{name}.weight.{i}"]
            state[f"importance.{key(name)}.biases.{i}"] = weights[f"importance.{name}.bias.{i}"]
    return state


def save_decomposition(directory: Path, model: ComponentModel, state: dict[str, Tensor], cfg: SPDTrainConfig,
                       target: dict[str, Any], output_loss: str) -> None:
    """config.json, weights.safetensors and train_config.json (metrics.json is the caller's, last)."""
    modules = {name: {"module": d.module, "kind": d.kind, "d_in": d.d_in, "d_out": d.d_out, "C": d.C,
                      "tied_to": d.tied_to} for name, d in model.plan.items()}
    record = {"format": FORMAT, "target": target, "spd": cfg.spd.model_dump(mode="json"), "output_loss": output_loss,
              "modules": modules, "lm_saes_version": __version__}
    write_safetensors(directory / WEIGHTS_NAME, {k: v.detach().contiguous().cpu() for k, v in weights_of(model, state).items()})
    write_atomic(directory / CONFIG_NAME, (json.dumps(record, indent=2) + "\n").encode())
    write_atomic(directory / TRAIN_CONFIG_NAME, (json.dumps(cfg.model_dump(mode="json"), indent=2) + "\n").encode())


class SubcomponentWeights(NamedTuple):
    V: Float[Tensor, "d_in C"]
    U: Float[Tensor, "C d_out"]

    @property
    def matrices(self) -> Float[Tensor, "C d_in d_out"]:
        """Each subcomponent's rank-one matrix V[:, c] U[c, :] (x @ W orientation)."""
        return self.V.T[:, :, None] * self.U[:, None, :]

    @property
    def norms(self) -> Float[Tensor, "C"]:
        """Frobenius norm of each subcomponent's matrix: |V[:, c]| |U[c, :]|."""
        return self.V.norm(dim=0) * self.U.norm(dim=1)


class Decomposition:
    """A trained decomposition and its target model (see the module docstring)."""

    def __init__(self, directory: Path, record: dict[str, Any], model: ComponentModel, target: Any) -> None:
        self.directory, self.record, self.model, self.target = directory, record, model, target

    @property
    def modules(self) -> list[str]:
        """The decomposed matrices, in the model's order."""
        return list(self.model.plan)

    def subcomponents(self, module: str) -> SubcomponentWeights:
        self._check(module)
        parts = self.model.parts[key(module)]
        return SubcomponentWeights(parts.V.detach(), parts.U.detach())

    @torch.no_grad()
    def inner_activations(self, inputs: Any) -> dict[str, Float[Tensor, "... C"]]:
        """x . V_c of every subcomponent of every decomposed matrix on the target's input."""
        _, seen = self.model.run_capturing(inputs)
        return {name: self.model.parts[key(name)].inner(x) for name, x in seen.items()}

    @torch.no_grad()
    def causal_importances(self, inputs: Any) -> dict[str, Float[Tensor, "... C"]]:
        """g_c in [0, 1] of every subcomponent of every decomposed matrix on the target's input."""
        _, seen = self.model.run_capturing(inputs)
        return {name: ci.lower for name, ci in self.model.causal_importances(seen).items()}

    @torch.no_grad()
    def masked_forward(self, inputs: Any, masks: dict[str, Tensor] | None = None,
                       delta: dict[str, Tensor] | None = None) -> Tensor:
        """The target's output with each named matrix replaced by its subcomponents times ``masks[m]``
        [..., C] (ones: all of them), plus ``delta[m]`` [...] times its residual W - V U if given."""
        for name in [*(masks or {}), *(delta or {})]:
            self._check(name)
        names = dict.fromkeys([*(masks or {}), *(delta or {})])
        deltas = self.model.weight_deltas() if delta else {}
        built = {}
        for name in names:
            m = (masks or {}).get(name)
            if m is None:
                raise LmSaesError(f"a delta mask for {name!r} needs its component mask too")
            built[name] = Masks(m, (delta or {}).get(name), deltas.get(name))
        return self.model.run(inputs, built)

    def __call__(self, inputs: Any) -> Tensor:
        """The target's own output."""
        with torch.no_grad():
            return self.model.run(inputs)

    def _check(self, module: str) -> None:
        if module not in self.model.plan:
            raise LmSaesError(f"{module!r} is not decomposed here; decomposed: {', '.join(self.model.plan)}")


def load_decomposition(directory: str | Path, device: str | torch.device = "cpu") -> Decomposition:
    """A decomposition directory's subcomponents and importance functions on its target model."""
    from lm_saes.spd.config import Target
    from lm_saes.spd.targets import open_target
    from pydantic import TypeAdapter

    directory = Path(directory)
    if not is_decomposition(directory):
        raise LmSaesError(f"{directory} holds no SPD decomposition (no {CONFIG_NAME} with format 'spd'); train one "
                          "with `lm-saes train` and an [spd] config")
    if not (directory / METRICS_NAME).is_file():
        raise LmSaesError(f"{directory} is unfinished (no {METRICS_NAME}); run its `lm-saes train` config again")
    record = json.loads((directory / CONFIG_NAME).read_text())
    train = json.loads((directory / TRAIN_CONFIG_NAME).read_text())
    device = torch.device(device)
    target = open_target(TypeAdapter(Target).validate_python(train["target"]), device)
    model = ComponentModel(target.model, SPDConfig.model_validate(record["spd"]), target.example)
    model.load_state_dict(state_of(model, load_file(directory / WEIGHTS_NAME)))
    return Decomposition(directory, record, model.to(device).eval(), target)
