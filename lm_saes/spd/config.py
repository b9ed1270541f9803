"""`lm-saes train` with an ``[spd]`` section: a stochastic parameter decomposition of a model.

    output_dir = "work/spd/tms_5-2"
    steps = 5000
    batch_size = 1024
    [target]                  # what is decomposed: a toy directory, a language model, or a cache pair
    kind = "toy"
    path = "work/toys/tms_5-2"
    [spd]
    C = 20
    modules = ["linear1", "linear2"]
    importance_coefficient = 3e-3

A config is an SPD config exactly when it has an ``[spd]`` section; ``load_train_config`` picks
the model (this one or the dictionary's ``TrainConfig``) and names the fields of the other kind
when they are mixed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import Field, field_validator, model_validator

from lm_saes.config import (
    DataConfig, ModelConfig, StrictModel, TrainConfig, read_config_data, validate_config,
)
from lm_saes.errors import ConfigError
from lm_saes.validation import DEVICE_PATTERN


class ToyTarget(StrictModel):
    """A toy model trained by `lm-saes toy` (its ground truth gives MMCS, ML2R, identity CI error)."""

    kind: Literal["toy"] = "toy"
    path: Path = Field(description="The toy directory.")


class LanguageModelTarget(StrictModel):
    """A language model on its own text, run on the fly (tokens built as `generate` builds them)."""

    kind: Literal["language_model"] = "language_model"
    model: ModelConfig = Field(description="The model (hub name or local Hugging Face directory).")
    data: DataConfig = Field(description="Its text; `batch_size` contexts of data.context_size tokens a step.")


class CacheTarget(StrictModel):
    """One module of a language model, fed from two aligned caches of its input and output (the pair
    a transcoder trains on): the layerwise mode. The model is the one the caches were generated from."""

    kind: Literal["cache"] = "cache"
    module: str = Field(description="The module whose input and output the caches hold, e.g. "
                        "'transformer.h.1.mlp' for blocks.1.mlp.hook_in -> blocks.1.hook_mlp_out.")
    cache: Path = Field(description="Hook directory of the module's input.")
    target_cache: Path = Field(description="Hook directory of the module's output, from the same generate run.")


Target = Annotated[Union[ToyTarget, LanguageModelTarget, CacheTarget], Field(discriminator="kind")]


class PAnneal(StrictModel):
    """Anneal the importance exponent p linearly to ``final`` between two fractions of the run."""

    final: float = Field(gt=0, description="p at the end of the anneal.")
    start_fraction: float = Field(0.0, ge=0, le=1, description="Fraction of the steps where annealing starts.")
    end_fraction: float = Field(1.0, ge=0, le=1, description="Fraction of the steps where p reaches `final`.")

    @model_validator(mode="after")
    def _ordered(self) -> "PAnneal":
        if self.end_fraction < self.start_fraction:
            raise ValueError(f"end_fraction={self.end_fraction} is before start_fraction={self.start_fraction}")
        return self


class SPDConfig(StrictModel):
    """The decomposition and its losses (Bushnaq et al. 2025; lm_saes/spd/)."""

    C: int = Field(description="Rank-one subcomponents per decomposed matrix.")
    C_per_module: dict[str, int] = Field(
        default_factory=dict, description="C for the modules matching a pattern (first match wins), e.g. "
        "{'transformer.h.*.attn.*' = 64}; the others get C."
    )
    modules: list[str] = Field(
        min_length=1, description="Module-name patterns (fnmatch: * matches within and across dots) of the "
        "matrices to decompose: nn.Linear, Hugging Face Conv1D and nn.Embedding modules."
    )
    identity_insertions: list[str] = Field(
        default_factory=list, description="Module-name patterns before whose input a decomposed identity "
        "matrix is inserted (its d is the input's width)."
    )
    tie: list[tuple[str, str]] = Field(
        default_factory=list, description="Pairs (a, b) of decomposed modules whose weights are transposes "
        "(TMS's tied W2 = W1^T): b's subcomponents are a's, transposed (U_b = V_a^T, V_b = U_a^T)."
    )
    importance_hidden: list[int] = Field(
        [16], description="Hidden widths of each subcomponent's causal-importance MLP (GELU), on its inner activation."
    )
    leak: float = Field(0.01, ge=0, description="Slope of the leaky hard sigmoids (below 0 for the masks, above 1 "
                        "for the importance loss).")
    delta_component: bool = Field(True, description="Add the residual W - sum U V as one more, randomly masked, "
                                  "component in the masked forwards.")
    n_mask_samples: int = Field(1, gt=0, description="Stochastic masks drawn per step for the reconstruction losses.")
    output_loss: Literal["auto", "mse", "kl"] = Field(
        "auto", description="How the masked model's output is compared with the target's: 'mse', 'kl' (of the "
        "logits), or 'auto' (a toy's own; KL for language models; MSE for a cached module)."
    )
    faithfulness_coefficient: float = Field(0.0, ge=0, description="Weight of mean (W - sum U V)^2 over all "
                                            "decomposed parameters after the warmup (spd's recipe: 0 with a delta component).")
    stochastic_coefficient: float = Field(1.0, ge=0, description="Weight of the stochastic reconstruction loss "
                                          "(every decomposed module masked).")
    layerwise_coefficient: float = Field(1.0, ge=0, description="Weight of the layerwise stochastic "
                                         "reconstruction loss (one module masked at a time).")
    importance_coefficient: float = Field(gt=0, description="Weight of the importance minimality loss "
                                          "sum over modules and subcomponents of mean (g + eps)^p.")
    p: float = Field(1.0, gt=0, description="Exponent of the importance minimality loss.")
    p_anneal: PAnneal | None = Field(None, description="Anneal p linearly (None: constant).")
    importance_warmup_steps: int = Field(0, ge=0, description="Steps over which the importance coefficient "
                                         "rises linearly from 0 (0: full from the start).")
    importance_eps: float = Field(1e-12, gt=0, description="eps in (g + eps)^p.")
    faithfulness_warmup_steps: int = Field(200, ge=0, description="Steps on the faithfulness loss alone before "
                                           "training (AdamW on U and V; they take no batches).")
    faithfulness_warmup_lr: float = Field(0.01, gt=0, description="Learning rate of the faithfulness warmup.")
    faithfulness_warmup_weight_decay: float = Field(0.1, ge=0, description="Weight decay of the faithfulness warmup.")
    ci_threshold: float = Field(0.1, gt=0, lt=1, description="A subcomponent is active on an input when its causal "
                                "importance exceeds this (CI-L0, alive components).")

    @field_validator("C")
    @classmethod
    def _positive_c(cls, c: int) -> int:
        if c < 1:
            raise ValueError(f"C={c}: each decomposed matrix needs at least one subcomponent (C >= 1)")
        return c

    @field_validator("C_per_module")
    @classmethod
    def _positive_cs(cls, cs: dict[str, int]) -> dict[str, int]:
        bad = {k: v for k, v in cs.items() if v < 1}
        if bad:
            raise ValueError(f"C must be at least 1 for every module; got {bad}")
        return cs

    @field_validator("importance_hidden")
    @classmethod
    def _widths(cls, widths: list[int]) -> list[int]:
        if any(w < 1 for w in widths):
            raise ValueError(f"importance_hidden widths must be positive, got {widths}")
        return widths


class SPDTrainConfig(StrictModel):
    """`lm-saes train` of a stochastic parameter decomposition (a config with an [spd] section)."""

    spd: SPDConfig
    target: Target
    output_dir: Path = Field(description="Decomposition directory to write.")
    steps: int = Field(gt=0, description="Optimizer steps (after the faithfulness warmup).")
    batch_size: int = Field(gt=0, description="Examples a step: toy inputs, contexts of a language model, or "
                            "cached rows.")
    lr: float = Field(1e-3, gt=0, description="Peak AdamW learning rate.")
    lr_warmup_steps: int = Field(0, ge=0, description="Linear learning-rate warmup steps.")
    lr_decay: Literal["constant", "linear", "cosine"] = Field("cosine", description="Decay to zero over the last "
                                                             "`lr_decay_fraction` of the steps.")
    lr_decay_fraction: float = Field(1.0, ge=0, le=1, description="Fraction of training spent decaying.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay (of U, V and the importance MLPs).")
    adam_betas: tuple[float, float] = Field((0.9, 0.999), description="AdamW (beta1, beta2).")
    seed: int = Field(0, ge=0, description="Seed of the initialisation, the batches and the masks.")
    device: str = Field("auto", pattern=DEVICE_PATTERN, description="'auto' (CUDA when present), 'cpu', 'cuda'...")
    tensor_parallel: int = Field(
        1, ge=1, description="Ranks that split the subcomponents of every module (and their importance "
        "functions) under torchrun; the rest of the world size splits the batch (data parallel)."
    )
    log_every: int = Field(100, gt=0, description="Steps between log lines (JSONL and progress bar).")
    checkpoint_every: int | None = Field(
        None, ge=0, description="Steps between checkpoints (None: every tenth of the run; 0: only at the end)."
    )
    eval_examples: int = Field(4096, gt=0, description="Inputs the final metrics (alive components, CI-L0, "
                               "reconstruction) see: toy inputs, contexts, or cached rows.")
    eval_batch_size: int = Field(512, gt=0, description="Inputs per batch of the final metrics.")
    wandb_project: str | None = Field(None, description="Also log to this Weights & Biases project.")
    progress: bool = Field(True, description="Show a progress bar.")
    overwrite: bool = Field(False, description="Replace a finished decomposition at output_dir.")

    @model_validator(mode="after")
    def _tied_are_decomposed(self) -> "SPDTrainConfig":
        for a, b in self.spd.tie:
            if a == b:
                raise ValueError(f"spd.tie pairs a module with itself ({a!r})")
        return self


class SPDEvalConfig(StrictModel):
    """`lm-saes eval` of a decomposition directory: its metrics (lm_saes/spd/evaluate.py) into metrics.json."""

    decomposition: Path = Field(description="Decomposition directory (written by `lm-saes train` with [spd]).")
    examples: int = Field(4096, gt=0, description="Inputs the metrics see: toy examples, contexts of a language "
                          "model, or cached rows.")
    batch_size: int = Field(512, gt=0, description="Inputs per evaluation batch (contexts for a language model).")
    device: str = Field("auto", pattern=DEVICE_PATTERN, description="'auto' (CUDA when present), 'cpu', 'cuda'...")
    seed: int = Field(1_234_567, ge=0, description="Seed of the evaluation inputs.")


SAE_ONLY = sorted(set(TrainConfig.model_fields) - set(SPDTrainConfig.model_fields))
SPD_ONLY = sorted(set(SPDTrainConfig.model_fields) - set(TrainConfig.model_fields))


def load_train_config(path: str | Path | None = None, overrides: list[str] | None = None
                      ) -> TrainConfig | SPDTrainConfig:
    """``lm-saes train``'s config: an SPD config when it has an [spd] section, else a dictionary's.
    Fields of the other kind are an error naming them."""
    data = read_config_data(path, overrides)
    source = str(path) if path else "config"
    return validate_train_config(data, source)


def validate_train_config(data: dict, source: str = "config") -> TrainConfig | SPDTrainConfig:
    if "spd" in data:
        mixed = [k for k in SAE_ONLY if k in data]
        if mixed:
            raise ConfigError(f"invalid {source}: {_fields(mixed, 'sparse-dictionary')}, but this "
                              "config has an [spd] section (an SPD decomposition): remove them, or remove [spd] to "
                              f"train a dictionary. SPD configs take: {', '.join(sorted(SPDTrainConfig.model_fields))}")
        return validate_config(SPDTrainConfig, data, source)
    mixed = [k for k in SPD_ONLY if k in data]
    if mixed:
        raise ConfigError(f"invalid {source}: {_fields(mixed, 'SPD')}, but this config has no "
                          "[spd] section (it trains a sparse dictionary): add [spd] to decompose a model's "
                          "parameters, or remove them")
    return validate_config(TrainConfig, data, source)


def _fields(names: list[str], kind: str) -> str:
    if len(names) == 1:
        return f"{names[0]!r} is {'an' if kind[0] in 'aeiouAEIOU' else 'a'} {kind} field"
    return f"{', '.join(repr(n) for n in names)} are {kind} fields"
