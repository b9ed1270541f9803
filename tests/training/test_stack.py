"""Trainers stepped as one stacked model give every member exactly the weights it gets alone, for
every variant, with members of other k, learning rates, seeds, coefficients and dead windows."""

from __future__ import annotations

import io

import pytest
import torch

from lm_saes.config import TrainConfig, validate_config
from lm_saes.dictionaries import build_dictionary
from lm_saes.training.stack import TrainerStack
from lm_saes.training.trainer import Trainer

D, D_SAE, BATCH, STEPS = 16, 64, 128, 10
KNOBS = {  # three members of each kind, differing in their knobs (and in lr, seed and dead window below)
    "topk": [{"k": 4}, {"k": 8, "aux_k": 16}, {"k": 6, "aux_coefficient": 0.1}],
    "batchtopk": [{"k": 4}, {"k": 8}, {"k": 6, "threshold_momentum": 0.5}],
    "relu": [{"l1_coefficient": 1.0}, {"l1_coefficient": 0.3}, {"l1_coefficient": 1.0}],
    "jumprelu": [{"l0_coefficient": 0.1}, {"l0_coefficient": 0.3, "bandwidth": 0.01},
                 {"l0_coefficient": 0.1, "tanh_scale": 2.0, "pre_act_coefficient": 1e-3}],
}


def batches() -> list[torch.Tensor]:
    """Activations near a plane: many features never fire, so AuxK has dead features to work on."""
    g = torch.Generator().manual_seed(0)
    plane = torch.randn(2, D, generator=g)
    return [torch.randn(BATCH, 2, generator=g) @ plane * 3 + 0.01 * torch.randn(BATCH, D, generator=g)
            for _ in range(STEPS)]


def trainers(kind: str, **switches) -> list[Trainer]:
    found = []
    for i, knobs in enumerate(KNOBS[kind]):
        cfg = validate_config(TrainConfig, {
            "dictionary": {"kind": kind, "d_sae": D_SAE, **knobs}, "output_dir": "unused", "device": "cpu",
            "total_tokens": 40 * BATCH, "batch_size": BATCH, "lr": [1e-3, 3e-3, 1e-3][i], "seed": i,
            "dead_after_tokens": (2 + 2 * i) * BATCH, "progress": False,  # AuxK starts at steps 2, 4 and 6
        })
        torch.manual_seed(cfg.seed)
        trainer = Trainer(cfg, build_dictionary(cfg.dictionary, D, D), torch.device("cpu"))
        for name, value in switches.items():
            setattr(trainer.dictionary, name, value)
        trainer.initialize([(x, x) for x in batches()[:2]])
        found.append(trainer)
    return found


def assert_same_state(alone: list[Trainer], stacked: list[Trainer]) -> None:
    for a, b in zip(alone, stacked):
        assert a.step == b.step
        for name, tensor in a.dictionary.state_dict().items():
            assert torch.equal(tensor, b.dictionary.state_dict()[name]), f"{a.cfg.dictionary.kind}: {name}"
        assert torch.equal(a.dead.tokens_since_fired, b.dead.tokens_since_fired)


CASES = [("topk", {}), ("topk", {"sparse_backward": False, "sparse_decode": False, "auxk_sync_free": True}),
         ("batchtopk", {}), ("batchtopk", {"sparse_backward": False, "sparse_decode": False, "auxk_sync_free": True}),
         ("relu", {}), ("jumprelu", {})]


@pytest.mark.parametrize("kind, switches", CASES, ids=[f"{k}{'-twins' if s else ''}" for k, s in CASES])
def test_a_stack_gives_each_member_the_weights_it_gets_alone(kind, switches):
    alone, stacked = trainers(kind, **switches), trainers(kind, **switches)
    stack = TrainerStack(stacked)
    aux = []
    for x in batches():
        outs = stack.step(x, x)
        for trainer in alone:
            trainer.train_step(x, x)
        aux.append([float(o.terms.get("aux", 0)) for o in outs])
    assert_same_state(alone, stacked)
    if kind in ("topk", "batchtopk"):  # AuxK ran for some members while others had none yet
        assert any(a[0] > 0 and a[2] == 0 for a in aux)


def test_members_leave_and_the_rest_restack_to_the_same_weights():
    alone, stacked = trainers("topk"), trainers("topk")
    stack = TrainerStack(stacked)
    for step, x in enumerate(batches()):
        if step == 4:  # a member finishes (or fails): the others go on in a stack of their own
            stack = TrainerStack(stacked[1:])
        for trainer, out in zip(stack.trainers, stack.step(x, x)):
            assert out.loss.isfinite()
        for trainer in alone[1 if step >= 4 else 0:]:
            trainer.train_step(x, x)
    assert_same_state(alone, stacked)


def test_a_checkpoint_of_a_stacked_member_holds_only_its_own_tensors():
    x = batches()[0]
    stacked, alone = trainers("relu"), trainers("relu")[0]
    TrainerStack(stacked).step(x, x)
    alone.train_step(x, x)
    w_enc = stacked[0].dictionary.W_enc
    assert w_enc.untyped_storage().nbytes() == 3 * w_enc.numel() * 4  # a view of the stacked storage
    files = [io.BytesIO(), io.BytesIO()]
    torch.save(stacked[0].state_dict(), files[0])
    torch.save(alone.state_dict(), files[1])
    assert abs(len(files[0].getvalue()) - len(files[1].getvalue())) < 1024  # not the stack's storage


def test_trainers_of_other_shapes_are_not_stacked():
    mixed = trainers("topk")[:1] + trainers("relu")[:1]
    with pytest.raises(ValueError, match="different shapes"):
        TrainerStack(mixed)
