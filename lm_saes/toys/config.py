"""Toy models with ground truth, and `lm-saes toy`'s training config.

Each toy is one config class tagged by ``kind`` (the ``ToyConfig`` union) and one module in this
folder (its model and data); a new toy adds both and a line in ``lm_saes/toys/__init__.py``.

    output_dir = "work/toys/modular_addition"
    steps = 2000
    [toy]
    kind = "modular_addition"
    p = 53
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import Field, model_validator

from lm_saes.config import StrictModel


class ModularAdditionConfig(StrictModel):
    """(a + b) mod p from the pair (a, b) by an MLP (nrimsky/devinterp's hackathon model):
    logits = unembed(act(W_a E[a] + b_a + W_b E[b] + b_b)), E the token embedding."""

    kind: Literal["modular_addition"] = "modular_addition"
    p: int = Field(53, ge=3, description="The modulus; inputs and labels are 0..p-1.")
    d_embed: int = Field(16, gt=0, description="Embedding width.")
    d_hidden: int = Field(32, gt=0, description="Hidden layer width.")
    activation: Literal["gelu", "relu"] = Field("gelu", description="Hidden nonlinearity.")
    tie_unembed: bool = Field(
        False, description="Unembed through the embedding (hidden -> d_embed, then @ E^T) instead of "
        "a free hidden -> p layer."
    )
    train_fraction: float = Field(0.95, gt=0, lt=1, description="Share of the p^2 pairs trained on; the rest "
                                  "is the test set.")
    random_labels: bool = Field(False, description="Label every pair with a random residue instead of "
                                "(a + b) mod p: a memorisation control.")
    data_seed: int = Field(0, ge=0, description="Seed of the train/test split and of the random labels.")


ToyConfig = Annotated[Union[ModularAdditionConfig], Field(discriminator="kind")]


class ToyTrainConfig(StrictModel):
    """`lm-saes toy`: train a toy model into a toy directory, with checkpoints along the way."""

    toy: ToyConfig
    output_dir: Path = Field(description="Toy directory to write (config.json, weights, log, checkpoints/).")
    steps: int = Field(2000, gt=0, description="Optimizer steps.")
    batch_size: int = Field(128, gt=0, description="Examples per step, drawn with replacement from the train set.")
    lr: float = Field(5e-3, gt=0, description="AdamW learning rate (constant).")
    weight_decay: float = Field(0.0, ge=0, description="AdamW (decoupled) weight decay.")
    no_weight_decay_steps: int = Field(0, ge=0, description="The last this many steps train without weight decay.")
    adam_betas: tuple[float, float] = Field((0.9, 0.999), description="AdamW (beta1, beta2).")
    checkpoint_every: int = Field(100, ge=0, description="Steps between saved checkpoints in checkpoints/ "
                                  "(0: none; step 0 and the last step are always saved when > 0).")
    log_every: int = Field(50, gt=0, description="Steps between train/test evaluations in train_log.jsonl.")
    seed: int = Field(0, ge=0, description="Seed of the initialisation and the batches.")
    device: str = Field("cpu", description="'cpu', 'cuda', or 'auto' (CUDA when present).")
    progress: bool = Field(True, description="Show a progress bar.")
    overwrite: bool = Field(False, description="Retrain a finished directory made with another config.")

    @model_validator(mode="after")
    def _decay_fits(self) -> "ToyTrainConfig":
        if self.no_weight_decay_steps > self.steps:
            raise ValueError(f"no_weight_decay_steps={self.no_weight_decay_steps} exceeds steps={self.steps}")
        return self
