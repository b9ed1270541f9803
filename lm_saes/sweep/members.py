"""A sweep's members: the search of a SweepConfig expanded into named, validated TrainConfigs.

A member is a dictionary's TrainConfig, or an SPD decomposition's SPDTrainConfig when the base
``train`` has an ``[spd]`` section (a variant cannot remove it, so a sweep is all one or the other).

For each variant: the base ``train`` with the variant's ``set`` applied; every combination of
the grid (global entries, overridden key by key by the variant's); ``samples`` random draws per
grid point; every seed. The expansion is a pure function of the config (the draws are seeded by
``search_seed`` and the variant's name), so an interrupted sweep finds the same members again.
"""

from __future__ import annotations

import copy
import itertools
import math
import random
import re
from typing import Any, NamedTuple

from lm_saes.config import TrainConfig, set_path
from lm_saes.errors import ConfigError
from lm_saes.spd.config import SPDTrainConfig, validate_train_config
from lm_saes.sweep.config import Distribution, SweepConfig

MEMBERS_DIR = "members"
# Fields every member must share: they define the one stream of batches all of them read.
SHARED = ("cache", "target_cache", "batch_size", "normalization_batches", "device")
SHARED_SPD = ("target", "batch_size", "device")  # a decomposition sweep's: one target, one stream of its inputs


class Member(NamedTuple):
    name: str
    variant: str
    params: dict[str, Any]  # dotted path -> this member's value, for every varied path
    train: TrainConfig | SPDTrainConfig  # a decomposition when the base train config has an [spd] section


def expand_members(cfg: SweepConfig) -> list[Member]:
    """Every member of the sweep, in a fixed order, each TrainConfig validated."""
    variants = cfg.variants or {_base_kind(cfg.train): None}
    seeds = cfg.seeds or [None]
    members: list[Member] = []
    for variant, spec in variants.items():
        base = copy.deepcopy(cfg.train)
        for path, value in (spec.set if spec else {}).items():
            set_path(base, path, copy.deepcopy(value), what=f"sweep variant {variant!r}")
        grid = {**cfg.grid, **(spec.grid if spec else {})}
        distributions = {**cfg.random, **(spec.random if spec else {})}
        rng = random.Random(f"{cfg.search_seed}/{variant}")
        for values in itertools.product(*grid.values()):
            point = dict(zip(grid, values))
            draws = [_draw(distributions, rng) for _ in range(cfg.samples)] if distributions else [{}]
            for draw, seed in itertools.product(draws, seeds):
                params = {**point, **draw, **({} if seed is None else {"seed": seed})}
                members.append(Member("", variant, params, base))  # named and validated below
    return _validated(cfg, _named(members))


def _base_kind(train: dict[str, Any]) -> str:
    if "spd" in train:
        return "spd"
    dictionary = train.get("dictionary")
    return dictionary.get("kind", "member") if isinstance(dictionary, dict) else "member"


def _draw(distributions: dict[str, Distribution], rng: random.Random) -> dict[str, Any]:
    drawn = {}
    for path, d in distributions.items():
        if d.uniform is not None:
            drawn[path] = rng.uniform(*d.uniform)
        elif d.log_uniform is not None:
            low, high = d.log_uniform
            drawn[path] = math.exp(rng.uniform(math.log(low), math.log(high)))
        elif d.integer is not None:
            drawn[path] = rng.randint(*d.integer)
        else:
            drawn[path] = copy.deepcopy(rng.choice(d.choice))
    return drawn


def _named(members: list[Member]) -> list[Member]:
    """Names from the variant and the varied values (``topk-k16-lr0.001``), unique in the sweep."""
    labels = param_labels(members)
    named, seen = [], {}
    for m in members:
        parts = [m.variant] + [f"{labels[p]}{_short(v)}" for p, v in m.params.items()]
        name = re.sub(r"[^A-Za-z0-9._-]", "", "-".join(parts))
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:  # two random draws that print alike
            name = f"{name}-{seen[name]}"
        named.append(m._replace(name=name))
    return named


def param_labels(members: list[Member]) -> dict[str, str]:
    """A short label for each varied path: its last part (``k`` for ``dictionary.k``), or the
    whole path with '_' for '.' where two paths end alike."""
    paths = list(dict.fromkeys(p for m in members for p in m.params))
    leaves = [p.split(".")[-1] for p in paths]
    return {p: (leaf if leaves.count(leaf) == 1 else p.replace(".", "_")) for p, leaf in zip(paths, leaves)}


def _short(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, dict):
        return str(value.get("kind", "table"))
    return str(value)


def _validated(cfg: SweepConfig, members: list[Member]) -> list[Member]:
    validated = []
    for m in members:
        data = copy.deepcopy(m.train)  # still the raw base dict here
        for path, value in m.params.items():
            set_path(data, path, copy.deepcopy(value), what=f"sweep member {m.name!r}")
        data.update(output_dir=str(cfg.output_dir / MEMBERS_DIR / m.name), progress=cfg.progress, overwrite=False)
        train = validate_train_config(data, source=f"sweep member {m.name!r}")
        validated.append(m._replace(train=train))
    _check_shared(validated)
    return validated


def _check_shared(members: list[Member]) -> None:
    if not members:
        raise ConfigError("the sweep has no members: a grid entry is an empty list")
    first = members[0]
    problems = []
    for m in members:
        for field in SHARED_SPD if isinstance(m.train, SPDTrainConfig) else SHARED:
            if getattr(m.train, field) != getattr(first.train, field):
                problems.append(f"{field} differs between {first.name!r} and {m.name!r}")
        if isinstance(m.train, TrainConfig) and m.train.on_the_fly is not None:
            problems.append(f"{m.name!r} trains on_the_fly: a sweep reads one cache; generate it first")
        elif isinstance(m.train, TrainConfig) and m.train.cache is None:
            problems.append(f"{m.name!r} has no train.cache")
        if m.train.tensor_parallel != 1:
            problems.append(f"{m.name!r} sets tensor_parallel: a sweep puts whole members on each rank")
    if problems:
        raise ConfigError("the members of a sweep share one stream of batches, so: "
                          + "; ".join(dict.fromkeys(problems)))
