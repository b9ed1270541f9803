"""`lm-saes llc` configuration: the SGLD sampler's settings and the model it samples around.

    model = "work/toys/modular_addition"     # a toy, a language model or a dictionary directory
    checkpoints = false                      # true: every saved checkpoint of a toy's training

    [sgld]
    step_size = 1e-3                         # epsilon
    localization = 100.0                     # gamma
    nbeta = "dataset"                        # n / ln n; "batch": m / ln m; or a number
    chains = 8
    draws = 1000
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from lm_saes.config import DataConfig, StrictModel

NbetaRule = Literal["batch", "dataset"]


class SGLDConfig(StrictModel):
    """SGLD around the trained weights w* (Lau et al. 2023), every chain stepped together.

    A step: w <- w - step_size/2 [nbeta grad L_batch(w) + localization (w - w*) + weight_decay w]
    + sqrt(step_size) N(0, I)."""

    step_size: float = Field(1e-3, gt=0, description="SGLD step size epsilon (typically 1e-4 to 1e-2); "
                             "too large and the chains diverge.")
    localization: float = Field(100.0, ge=0, description="gamma: strength of the pull toward w* "
                                "(typically 5 to 100).")
    nbeta: float | NbetaRule = Field(
        "batch", description="Inverse temperature times sample size: 'batch' for m / ln m (m = batch_size), "
        "'dataset' for n / ln n (n = examples in the loss's dataset), or a number."
    )
    weight_decay: float = Field(0.0, ge=0, description="lambda of an optional Gaussian prior centred at 0.")
    chains: int = Field(4, gt=0, description="Independent chains (run together, vectorised).")
    draws: int = Field(200, gt=1, description="SGLD steps per chain; the first `burn_in` of them are discarded.")
    burn_in: float = Field(0.25, ge=0, lt=1, description="Fraction of each chain's steps left out of the estimate.")
    batch_size: int = Field(128, gt=0, description="Examples (contexts, tokens) per SGLD step; every chain "
                            "sees the same batch at a step.")
    restrict_to_orthogonal_gradient: bool = Field(
        False, description="Keep each chain's displacement from w* orthogonal to the loss gradient at w* "
        "(estimated on `reference_batches` batches)."
    )
    reference_batches: int = Field(8, gt=0, description="Batches that estimate the gradient at w* for "
                                   "restrict_to_orthogonal_gradient.")
    mala_every: int = Field(10, ge=0, description="Measure the MALA acceptance probability every this many "
                            "steps (one more loss and gradient each time; 0: never). Around 0.9 is a good step size.")
    seed: int = Field(0, ge=0, description="Seed of the SGLD noise and the batch order.")
    vectorize: bool = Field(True, description="Step all chains in one vmapped call; false runs the chains' "
                            "gradients one after another (the slow twin: the same numbers, for checking).")

    @model_validator(mode="after")
    def _checks(self) -> "SGLDConfig":
        if isinstance(self.nbeta, float) and self.nbeta <= 0:
            raise ValueError(f"nbeta must be positive, got {self.nbeta}")
        if self.kept_draws < 1:
            raise ValueError(f"burn_in={self.burn_in} leaves no draw of {self.draws}")
        return self

    @property
    def burn_in_steps(self) -> int:
        return int(self.burn_in * self.draws)

    @property
    def kept_draws(self) -> int:
        return self.draws - self.burn_in_steps


class LLCConfig(StrictModel):
    """`lm-saes llc`: the local learning coefficient of a trained model, and its loss traces."""

    model: Path = Field(description="A toy directory (`lm-saes toy`), a language-model directory "
                        "(`lm-saes pretrain`) or a dictionary directory (`lm-saes train`).")
    output_dir: Path | None = Field(None, description="Where llc.json and the plots go (None: <model>/llc).")
    sgld: SGLDConfig = Field(default_factory=SGLDConfig, description="The sampler.")
    data: DataConfig | None = Field(
        None, description="Language model: the text whose next-token loss is sampled (None: the model's "
        "corpus/train.jsonl written by `lm-saes pretrain`, at its training context size)."
    )
    cache: Path | None = Field(None, description="Dictionary: the activation cache of its loss (None: the "
                               "cache it was trained on).")
    target_cache: Path | None = Field(None, description="Transcoder: the target cache (None: its training one).")
    checkpoints: bool = Field(False, description="Estimate at every saved checkpoint of a toy's training "
                              "and plot the LLC beside train and test loss over steps.")
    device: str = Field("auto", description="'auto' (CUDA when present), 'cpu', 'cuda'...")
    progress: bool = Field(True, description="Show a progress bar.")
    overwrite: bool = Field(False, description="Replace a finished estimate in output_dir made with another config.")

    @property
    def resolved_output_dir(self) -> Path:
        return self.output_dir if self.output_dir is not None else self.model / "llc"
