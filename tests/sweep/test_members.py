"""Expanding a sweep config into its members: grid, random draws, variants, seeds, and errors."""

from __future__ import annotations

import math

import pytest
import torch

from lm_saes.config import validate_config
from lm_saes.errors import ConfigError
from lm_saes.sweep.config import SweepConfig
from lm_saes.sweep.members import expand_members


def config(**extra) -> SweepConfig:
    data = {"name": "s", "output_dir": "/tmp/s",
            "train": {"cache": "/c/hook", "total_tokens": 4096, "batch_size": 256,
                      "dictionary": {"kind": "topk", "d_sae": 64, "k": 4}}}
    data.update(extra)
    return validate_config(SweepConfig, data)


def test_a_grid_is_every_combination_named_by_its_values():
    members = expand_members(config(grid={"dictionary.k": [2, 8], "lr": [1e-3, 3e-4]}))
    assert [m.name for m in members] == ["topk-k2-lr0.001", "topk-k2-lr0.0003", "topk-k8-lr0.001", "topk-k8-lr0.0003"]
    assert [(m.train.dictionary.k, m.train.lr) for m in members] == [(2, 1e-3), (2, 3e-4), (8, 1e-3), (8, 3e-4)]
    assert members[0].params == {"dictionary.k": 2, "lr": 1e-3}
    assert str(members[0].train.output_dir) == "/tmp/s/members/topk-k2-lr0.001"
    assert all(m.train.cache.name == "hook" and m.train.batch_size == 256 for m in members)


def test_variants_override_the_base_and_the_global_grid_key_by_key():
    members = expand_members(config(
        grid={"lr": [1e-3], "dictionary.k": [4]},
        variants={
            "topk": {"grid": {"dictionary.k": [2, 8]}},
            "relu": {"set": {"dictionary": {"kind": "relu", "d_sae": 32, "l1_coefficient": 1.0}},
                     "grid": {"dictionary.l1_coefficient": [0.5, 2.0], "dictionary.k": []}},
        },
    ))
    topk = [m for m in members if m.variant == "topk"]
    assert [(m.train.dictionary.k, m.train.lr) for m in topk] == [(2, 1e-3), (8, 1e-3)]
    # An empty list in a variant's grid leaves that variant with no members.
    assert [m for m in members if m.variant == "relu"] == []


def test_a_variant_may_change_the_kind_whole():
    members = expand_members(config(variants={
        "topk": {},
        "relu": {"set": {"dictionary": {"kind": "relu", "d_sae": 32, "l1_coefficient": 1.0}},
                 "grid": {"dictionary.l1_coefficient": [0.5, 2.0]}},
    }))
    assert [m.name for m in members] == ["topk", "relu-l1_coefficient0.5", "relu-l1_coefficient2"]
    assert members[1].train.dictionary.kind == "relu" and members[1].train.dictionary.d_sae == 32


def test_random_draws_are_seeded_and_inside_their_distributions():
    cfg = config(samples=5, search_seed=3, random={
        "lr": {"log_uniform": [1e-4, 1e-2]}, "dictionary.k": {"integer": [2, 6]},
        "sparsity_warmup_steps": {"choice": [0, 10]}, "lr_decay_fraction": {"uniform": [0.1, 0.3]},
    })
    members = expand_members(cfg)
    assert len(members) == 5 and len({m.name for m in members}) == 5
    for m in members:
        assert 1e-4 <= m.train.lr <= 1e-2 and 2 <= m.train.dictionary.k <= 6
        assert m.train.sparsity_warmup_steps in (0, 10) and 0.1 <= m.train.lr_decay_fraction <= 0.3
    assert [m.params for m in expand_members(cfg)] == [m.params for m in members]  # the same on resume
    other = expand_members(cfg.model_copy(update={"search_seed": 4}))
    assert [m.params for m in other] != [m.params for m in members]
    logs = sorted(math.log10(m.train.lr) for m in members)
    assert logs[-1] - logs[0] > 0.3  # spread over the decades, not stuck at one value


def test_seeds_cross_every_member_and_seed_only_the_initialisation():
    members = expand_members(config(grid={"dictionary.k": [2, 4]}, seeds=[0, 7]))
    assert [m.name for m in members] == ["topk-k2-seed0", "topk-k2-seed7", "topk-k4-seed0", "topk-k4-seed7"]
    assert [m.train.seed for m in members] == [0, 7, 0, 7]


@pytest.mark.parametrize("extra, message", [
    ({"grid": {"batch_size": [128, 256]}}, "batch_size differs between 'topk-batch_size128' and 'topk-batch_size256'"),
    ({"grid": {"dictionary.k": [4, 100]}}, "sweep member 'topk-k100'"),
    ({"grid": {"dictionary.kk": [4]}}, "unknown field 'dictionary.kk'; did you mean 'k'?"),
    ({"grid": {"tensor_parallel": [2]}}, "sets tensor_parallel"),
    ({"grid": {"total_tokens.x": [2]}}, "'total_tokens' is not a section"),
    ({"grid": {"lr": []}}, "the sweep has no members"),
])
def test_members_that_cannot_share_a_stream_or_do_not_validate_are_refused(extra, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")):
        expand_members(config(**extra))


@pytest.mark.parametrize("extra, message", [
    ({"random": {"lr": {"uniform": [0.1, 0.2]}}}, "need samples > 0"),
    ({"samples": 2, "random": {"lr": {"uniform": [0.1, 0.2], "choice": [1]}}}, "exactly one of"),
    ({"samples": 2, "random": {"lr": {"log_uniform": [0.0, 0.2]}}}, "low > 0"),
    ({"train": {"output_dir": "x", "total_tokens": 1}}, "leave train.output_dir out"),
    ({"variants": {"a b": {}}}, "may hold only letters"),
    ({"baselines": ["pca", "svd"]}, "baselines.1"),
    ({"variants": {"topk": {"gird": {}}}}, "unknown field 'variants.topk.gird'; did you mean 'grid'"),
    ({"samples": 1, "random": {"lr": {"log_unifrom": [1, 2]}}}, "unknown field 'random.lr.log_unifrom'; did you mean 'log_uniform'"),
])
def test_bad_sweep_configs_name_the_problem(extra, message):
    with pytest.raises(ConfigError, match=message):
        config(**extra)


def test_members_per_pass_on_a_gpu_by_hand():
    from lm_saes.sweep.together import fitting_members, member_bytes

    cfg = expand_members(config())[0].train  # d_sae 64, batch 256
    held, step = member_bytes(cfg, d_in=32, d_out=32)
    assert held == 16 * (32 * 64 * 2 + 64 + 32)  # weights, grads, two Adam moments, float32
    assert step == 12 * 256 * 64
    # A stack's members step at once: each needs its held bytes and its step's.
    assert fitting_members(3 * (held + step) + step, [(held, step)] * 8) == 3
    assert fitting_members(100 * (held + step), [(held, step)] * 8) == 8
    assert fitting_members(10, [(held, step)] * 8) == 1  # never fewer than one


def test_members_per_stack_all_on_an_accelerator_one_on_the_cpu_unless_set():
    from lm_saes.sweep.together import stack_width

    assert stack_width(torch.device("cpu"), 0) == 1
    assert stack_width(torch.device("cuda"), 0) is None  # every member of one shape
    assert stack_width(torch.device("cpu"), 3) == 3


def test_member_workers_one_per_thread_on_the_cpu_one_on_an_accelerator_at_most_one_per_stack():
    from lm_saes.sweep.workers import intra_op_threads, worker_count

    threads = torch.get_num_threads()
    assert worker_count(torch.device("cpu"), stacks=8) == min(8, threads)
    assert worker_count(torch.device("cpu"), stacks=1) == 1  # never more workers than stacks
    assert worker_count(torch.device("cuda"), stacks=8) == 1
    assert worker_count(torch.device("cpu"), stacks=8, requested=3) == 3
    assert worker_count(torch.device("cpu"), stacks=2, requested=3) == 2
    with intra_op_threads(2 * threads) as each:  # more workers than threads: one each
        assert each == 1 == torch.get_num_threads()
    assert torch.get_num_threads() == threads


def test_a_step_pool_runs_every_task_and_hands_back_what_failed():
    import threading

    from lm_saes.sweep.workers import StepPool

    pool = StepPool(2)
    both = threading.Barrier(2, timeout=10)  # passes only if two tasks run at once

    def meet(value: int) -> int:
        both.wait()
        return value

    try:
        out = pool.run({"a": lambda: meet(1), "b": lambda: meet(2)})
        assert out == {"a": 1, "b": 2}
        out = pool.run({"ok": lambda: 3, "bad": lambda: 1 / 0})
        assert out["ok"] == 3 and isinstance(out["bad"], ZeroDivisionError)
    finally:
        pool.close()
