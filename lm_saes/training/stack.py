"""Trainers of dictionaries of one shape stepped as one stacked model.

A sweep's members that share a ``stack_key`` (kind, sizes, mode, fast-path switches, the knobs that
change the computation's shape, autocast and device) train as one: their tensors live in shared
storage with a leading member axis [M, ...], each member's own parameters and buffers being views
of its slice, and one ``Dictionary.stacked_loss`` runs every member's matmuls as batched matmuls
(torch.bmm). Per-member knobs (k, learning rates, coefficients, warmups, dead windows) stay each
member's own: the optimizer, schedules, dead-feature tracking, checkpoints and saved weights are
its Trainer's, untouched by the stacking.

A Trainer alone is a stack of one, with no storage of its own (views of its tensors). Every
operation of the stacked maths gives member i's slice the same bits whatever the stack's size
(checked on the CPU by tests/training/test_stack.py), so a member trained in a stack gets exactly
the weights it gets alone. On a GPU, batched and single matmuls may pick different kernels and
scatters use atomics: there the two agree up to float rounding.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from lm_saes.dictionaries import LossOutput
from lm_saes.dictionaries.base import Stack

if TYPE_CHECKING:
    from lm_saes.training.trainer import Trainer


def stack_key(trainer: Trainer) -> tuple:
    """Trainers of one key can be stacked."""
    return (*trainer.dictionary.stack_key(), trainer.cfg.autocast, str(trainer.device), trainer.comm.tp_size)


class TrainerStack:
    """Trainers of one ``stack_key``, stepped together. With more than one, their dictionaries'
    tensors are moved into stacked storage (each member keeps views of its slice) until another
    stack takes them."""

    def __init__(self, trainers: list[Trainer]) -> None:
        keys = {stack_key(t) for t in trainers}
        if len(keys) != 1:
            raise ValueError(f"trainers of different shapes cannot be stacked: {sorted(map(str, keys))}")
        self.trainers = trainers
        self.storage = _stacked_storage([t.dictionary for t in trainers]) if len(trainers) > 1 else None

    def stack(self) -> Stack:
        dictionaries = [t.dictionary for t in self.trainers]
        if self.storage is None:
            return Stack.of(dictionaries[0])
        return Stack(self.storage, dictionaries)

    def step(self, x: Tensor, y: Tensor) -> list[LossOutput]:
        """One Adam step of every member on the batch (x, y)."""
        for t in self.trainers:
            t.begin_step()
        outs = self.forward_backward(x, y)
        for t, out in zip(self.trainers, outs):
            t.end_step(out, x, y)
        return outs

    def forward_backward(self, x: Tensor, y: Tensor) -> list[LossOutput]:
        """Every member's loss on (x, y) and its gradients."""
        st = self.stack()
        scales = st.tensors["input_scale"].view(-1, 1, 1), st.tensors["output_scale"].view(-1, 1, 1)
        rho = st.members[0].token_factors(x)  # [batch, 1] or None; the stack's members share normalize_tokens
        if rho is not None:
            x, y = x * rho, y * rho
        ctxs = [t.context() for t in self.trainers]
        with self.trainers[0].autocast():
            out = type(st.members[0]).stacked_loss(st, x.unsqueeze(0) * scales[0], y.unsqueeze(0) * scales[1], ctxs)
        out.loss.sum().backward()  # the members' losses share no parameter: each gets its own gradient
        if self.storage is not None:
            self._hand_out_gradients()
        for t in self.trainers:
            t.comm.average_gradients(list(t.dictionary.parameters()))
        return [out.member(i) for i in range(len(self.trainers))]

    def _hand_out_gradients(self) -> None:
        """Each member's gradients: views of its slice of the stacked ones."""
        for name, stacked in self.storage.items():
            if stacked.grad is None:
                continue
            for i, t in enumerate(self.trainers):
                getattr(t.dictionary, name).grad = stacked.grad[i]
            stacked.grad = None


@torch.no_grad()
def _stacked_storage(dictionaries: list) -> dict[str, Tensor]:
    """Every tensor of the dictionaries stacked into one [M, ...] tensor (a leaf with gradients for a
    parameter); each dictionary's own tensor becomes a view of its slice."""
    storage = {}
    for name in dictionaries[0].tensor_names():
        own = [getattr(d, name) for d in dictionaries]
        stacked = torch.stack([t.detach() for t in own])
        for i, tensor in enumerate(own):
            tensor.data = stacked[i]
        storage[name] = stacked.requires_grad_(own[0].requires_grad)
    return storage
