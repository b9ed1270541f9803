"""Toy models with ground truth, shared by the stages that study them (llc/, spd/).

A toy is a ``ToySpec``: how to build its model from its config, its train and test data, its
loss and its metrics. Each lives in its own module; registering it is one line in ``TOYS``.
Data sets are NamedTuples of tensors whose first dimension indexes examples (``take`` draws rows).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from lm_saes.toys import modular_addition
from lm_saes.toys.config import ModularAdditionConfig, ToyConfig, ToyTrainConfig


class ToySpec(NamedTuple):
    config: type  # its config class (a member of the ToyConfig union)
    build: Callable[[Any], nn.Module]  # config -> a freshly initialised model (seed beforehand)
    data: Callable[[Any], Any]  # config -> an object with .train and .test example sets
    loss: Callable[[nn.Module, Any], Tensor]  # (model, examples) -> mean training loss (scalar)
    metrics: Callable[[nn.Module, Any], dict[str, float]]  # (model, examples) -> {"loss", "accuracy", ...}


TOYS: dict[str, ToySpec] = {
    "modular_addition": ToySpec(
        ModularAdditionConfig, modular_addition.ModularAdditionMLP, modular_addition.make_data,
        modular_addition.loss, modular_addition.metrics,
    ),
}


def take(examples: Any, rows: Tensor) -> Any:
    """The examples at ``rows`` (a NamedTuple of tensors, indexed along their first dimension)."""
    return type(examples)(*(t[rows] for t in examples))


def n_examples(examples: Any) -> int:
    return len(examples[0])


def to_device(examples: Any, device: torch.device) -> Any:
    return type(examples)(*(t.to(device) for t in examples))


__all__ = ["TOYS", "ToyConfig", "ToySpec", "ToyTrainConfig", "n_examples", "take", "to_device"]
