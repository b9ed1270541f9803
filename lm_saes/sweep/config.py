"""`lm-saes sweep` configuration: a base training config and the search around it.

    name = "quickstart"
    output_dir = "work/sweeps/quickstart"
    seeds = [0, 1]                           # every member once per seed (initialisation)

    [train]                                  # a TrainConfig without output_dir: the base
    cache = "work/cache/.../blocks.1.hook_resid_post"
    total_tokens = 300_000
    dictionary = { kind = "topk", d_sae = 1024, k = 32 }

    [grid]                                   # every combination; keys are dotted field paths
    lr = [4e-4, 1e-3]

    [random]                                 # `samples` draws per grid point
    "dictionary.d_sae" = { choice = [512, 1024] }
    samples = 0

    [variants.topk]                          # per-variant sections: `set` over the base,
    grid = { "dictionary.k" = [8, 16, 32] }  # `grid`/`random` merged key by key over the global

    [variants.relu]
    set = { dictionary = { kind = "relu", d_sae = 1024, l1_coefficient = 5.0 } }
    grid = { "dictionary.l1_coefficient" = [1.0, 5.0] }

A value replaces the field at its path whole (a table replaces a table), so a variant may
change the dictionary's kind. Every member's TrainConfig is validated before anything trains.
A base ``train`` with an ``[spd]`` section sweeps SPD decompositions instead (``spd.py``;
e.g. ``"spd.importance_coefficient" = [3e-3, 1e-2]``): no baselines, no ``analyze``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from lm_saes.config import EvalSettings, StoreConfig, StrictModel

BaselineName = Literal["pca", "ica", "nmf", "neurons", "random"]


class Distribution(StrictModel):
    """One random-search distribution: set exactly one field."""

    uniform: tuple[float, float] | None = Field(None, description="Uniform on [low, high].")
    log_uniform: tuple[float, float] | None = Field(None, description="Log-uniform on [low, high], low > 0.")
    integer: tuple[int, int] | None = Field(None, description="Uniform integer in [low, high], both included.")
    choice: list[Any] | None = Field(None, min_length=1, description="One of these values, uniformly.")

    @model_validator(mode="after")
    def _exactly_one(self) -> Distribution:
        given = [name for name in type(self).model_fields if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of uniform, log_uniform, integer, choice (got {given or 'none'})")
        bounds = self.uniform or self.log_uniform or self.integer
        if bounds is not None and bounds[0] > bounds[1]:
            raise ValueError(f"low {bounds[0]} is above high {bounds[1]}")
        if self.log_uniform is not None and self.log_uniform[0] <= 0:
            raise ValueError("log_uniform needs low > 0")
        return self


Grid = dict[str, list[Any]]
Random = dict[str, Distribution]


class VariantConfig(StrictModel):
    """A variant: fields set over the base, and its own grid / random entries (merged key by key
    over the global ones)."""

    set: dict[str, Any] = Field(default_factory=dict, description="Dotted field path -> value.")
    grid: Grid = Field(default_factory=dict, description="Dotted field path -> values (over the global grid).")
    random: Random = Field(default_factory=dict, description="Dotted field path -> distribution.")


class SweepAnalyzeConfig(StrictModel):
    """Analyze some members into the store after the sweep, so the UI links them to their features."""

    members: Literal["frontier", "all"] | list[str] = Field(
        "frontier", description="'frontier': the members on a Pareto front; 'all'; or member names."
    )
    settings: dict[str, Any] = Field(description="An AnalyzeConfig without dictionary, dictionary_name "
                                     "and store (those come from the sweep): at least its `cache`.")

    @field_validator("settings")
    @classmethod
    def _no_dictionary(cls, settings: dict[str, Any]) -> dict[str, Any]:
        given = sorted({"dictionary", "dictionary_name", "store", "replace_stored"} & settings.keys())
        if given:
            raise ValueError(f"leave {given} out of analyze.settings: the sweep sets them for each member")
        return settings


class SweepConfig(StrictModel):
    """`lm-saes sweep`: many dictionaries trained together over one read of a cache."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
                      description="The sweep's name (its record in the store).")
    output_dir: Path = Field(description="Sweep directory: members/<member>/, results.csv/json, plots.")
    train: dict[str, Any] = Field(description="The base TrainConfig (or, with an [spd] section, SPDTrainConfig), "
                                  "without output_dir.")
    grid: Grid = Field(default_factory=dict, description="Dotted field path -> values: every combination.")
    random: Random = Field(default_factory=dict, description="Dotted field path -> distribution.")
    samples: int = Field(0, ge=0, description="Random draws per grid point (0: no random search).")
    search_seed: int = Field(0, ge=0, description="Seed of the random search's draws.")
    seeds: list[int] = Field(default_factory=list, description="Train every member once per seed "
                             "(the initialisation; the batch order is the base train.seed's).")
    variants: dict[str, VariantConfig] = Field(
        default_factory=dict, description="Named variants; none: one variant named after the base dictionary's kind."
    )
    members_per_pass: int = Field(0, ge=0, description="Members trained together in one read of the "
                                  "cache (0: all). Lower it when they do not fit in device memory.")
    members_per_stack: int = Field(0, ge=0, description="Members of one shape stepped as one stacked model "
                                   "(batched matmuls over the members). 0: all of them on an accelerator, one "
                                   "on the CPU, where a stack only spills the cache (benchmarks/sweep.py).")
    member_workers: int = Field(0, ge=0, description="Threads stepping the stacks side by side, sharing the "
                                "intra-op threads (at most one per stack). 0: on the CPU one per thread torch "
                                "uses, on an accelerator 1. Dictionary members only: SPD members step one by one.")
    eval: EvalSettings = Field(default_factory=lambda: EvalSettings(tokens=65_536, ce_tokens=8_192),
                               description="How much data each member's (and baseline's) metrics see.")
    baselines: list[BaselineName] = Field(
        ["pca", "ica", "neurons", "random"], description="Baselines measured at the members' L0s."
    )
    baseline_l0: list[int] = Field(default_factory=list, description="L0 budgets of the baselines "
                                   "(empty: the members' rounded L0s).")
    baseline_fit_tokens: int = Field(16_384, gt=0, description="Tokens the PCA/ICA bases are fitted on "
                                     "(FastICA's time grows with tokens x d^2).")
    record: bool = Field(True, description="Write the sweep's record to the store (for the UI).")
    replace_stored: bool = Field(False, description="Replace a stored sweep record of this name that another "
                                 "output_dir wrote (by default that is refused before anything trains).")
    analyze: SweepAnalyzeConfig | None = Field(None, description="Members to analyze into the store "
                                               "(named '<sweep>.<member>'); None: none.")
    store: StoreConfig = Field(default_factory=StoreConfig, description="Where the record goes.")
    progress: bool = Field(True, description="Show a progress bar per member.")

    @field_validator("train")
    @classmethod
    def _no_output_dir(cls, train: dict[str, Any]) -> dict[str, Any]:
        if "output_dir" in train:
            raise ValueError("leave train.output_dir out: each member trains into <output_dir>/members/<member>")
        return train

    @field_validator("variants")
    @classmethod
    def _names(cls, variants: dict[str, VariantConfig]) -> dict[str, VariantConfig]:
        for name in variants:
            if not name or not all(c.isalnum() or c in "._-" for c in name):
                raise ValueError(f"variant name {name!r} may hold only letters, digits, '.', '_' and '-'")
        return variants

    @model_validator(mode="after")
    def _searchable(self) -> SweepConfig:
        random_keys = set(self.random) | {k for v in self.variants.values() for k in v.random}
        if random_keys and not self.samples:
            raise ValueError(f"random entries {sorted(random_keys)} need samples > 0")
        return self
