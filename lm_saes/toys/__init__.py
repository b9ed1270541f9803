"""Toy models with ground truth, shared by the stages that study them (llc/, spd/).

A toy is a ``ToySpec``: how to build its model from its config, its train and test data, its
loss and its metrics; for toys whose examples are drawn fresh (``sample``), the generator; how a
parameter decomposition compares its outputs (``output_loss``); and what is known to be true of
it (``truth``). Each lives in its own module; registering it is one entry in ``TOYS``.
Data sets are NamedTuples of tensors whose first dimension indexes examples (``take`` draws rows);
their first field is the model's input.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from lm_saes.toys import induction, modular_addition, resid_mlp, tms
from lm_saes.toys.config import (
    InductionConfig, ModularAdditionConfig, ResidMLPConfig, TMSConfig, ToyConfig, ToyTrainConfig,
)


class GroundTruth(NamedTuple):
    """What a decomposition of the toy should find."""

    feature_axes: dict[str, str]  # matrix -> "in" / "out": the axis of its weight indexing the true features
    identity_modules: list[str]  # matrices whose causal importances should pick one subcomponent per feature
    single_features: Tensor  # [n_features, n_features]: each feature alone (the identity-CI probe inputs)


class ToySpec(NamedTuple):
    config: type  # its config class (a member of the ToyConfig union)
    build: Callable[[Any], nn.Module]  # config -> a freshly initialised model (seed beforehand)
    data: Callable[[Any], Any]  # config -> an object with .train and .test example sets
    loss: Callable[[nn.Module, Any], Tensor]  # (model, examples) -> mean training loss (scalar)
    metrics: Callable[[nn.Module, Any], dict[str, float]]  # (model, examples) -> {"loss", "accuracy", ...}
    sample: Callable[[Any, int, torch.Generator], Any] | None = None  # (config, n, generator) -> fresh examples
    output_loss: str = "kl"  # how a decomposition's output is compared with the model's: "mse" or "kl" (logits)
    truth: Callable[[Any], GroundTruth] | None = None  # config -> what a decomposition should find


def _tms_truth(cfg: TMSConfig) -> GroundTruth:
    return GroundTruth(tms.feature_axes(cfg), tms.identity_modules(cfg), tms.single_features(cfg.n_features))


def _resid_mlp_truth(cfg: ResidMLPConfig) -> GroundTruth:
    return GroundTruth({}, resid_mlp.identity_modules(cfg), tms.single_features(cfg.n_features))


TOYS: dict[str, ToySpec] = {
    "modular_addition": ToySpec(
        ModularAdditionConfig, modular_addition.ModularAdditionMLP, modular_addition.make_data,
        modular_addition.loss, modular_addition.metrics,
    ),
    "tms": ToySpec(TMSConfig, tms.TMSModel, tms.make_data, tms.loss, tms.metrics, tms.sample, "mse", _tms_truth),
    "resid_mlp": ToySpec(ResidMLPConfig, resid_mlp.ResidMLP, resid_mlp.make_data, resid_mlp.loss, resid_mlp.metrics,
                         resid_mlp.sample, "mse", _resid_mlp_truth),
    "induction": ToySpec(InductionConfig, induction.InductionTransformer, induction.make_data, induction.loss,
                         induction.metrics, induction.sample, "kl"),
}


def take(examples: Any, rows: Tensor) -> Any:
    """The examples at ``rows`` (a NamedTuple of tensors, indexed along their first dimension)."""
    return type(examples)(*(t[rows] for t in examples))


def n_examples(examples: Any) -> int:
    return len(examples[0])


def to_device(examples: Any, device: torch.device) -> Any:
    return type(examples)(*(t.to(device) for t in examples))


__all__ = ["TOYS", "GroundTruth", "ToyConfig", "ToySpec", "ToyTrainConfig", "n_examples", "take", "to_device"]
