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


class _Sampled(StrictModel):
    """Toys whose examples are drawn fresh for every training batch; fixed train and test sets of
    the same distribution serve the metrics (and the LLC)."""

    n_train: int = Field(10_000, gt=0, description="Examples in the fixed train set (metrics, LLC).")
    n_test: int = Field(10_000, gt=0, description="Examples in the fixed test set.")
    data_seed: int = Field(0, ge=0, description="Seed of the fixed train and test sets.")


class TMSConfig(_Sampled):
    """Toy model of superposition: ReLU(W2 W1 x + b), n_features sparse features through n_hidden
    dimensions (lm_saes/toys/tms.py). The 5-2 and 40-10 settings are spd's."""

    kind: Literal["tms"] = "tms"
    n_features: int = Field(5, gt=0, description="Input (and output) features.")
    n_hidden: int = Field(2, gt=0, description="Hidden width (fewer than n_features: superposition).")
    n_hidden_layers: int = Field(0, ge=0, description="Fixed identity layers (n_hidden x n_hidden nn.Linear, "
                                 "never trained) between linear1 and linear2.")
    tied: bool = Field(True, description="W2 = W1^T (tied weights) instead of a free W2.")
    init_bias_to_zero: bool = Field(True, description="Start the output bias at 0 (else nn.Linear's init).")
    feature_probability: float = Field(0.05, gt=0, le=1, description="Probability that a feature is on.")


class ResidMLPConfig(_Sampled):
    """Residual MLP computing more ReLU functions than it has neurons (lm_saes/toys/resid_mlp.py):
    spd's resid_mlp1/2/3 are n_features 100/100/102, d_mlp 50/25/17, n_layers 1/2/3."""

    kind: Literal["resid_mlp"] = "resid_mlp"
    n_features: int = Field(100, gt=0, description="Input features (and output functions).")
    d_embed: int = Field(1000, gt=0, description="Residual width (a fixed random embedding of the features).")
    d_mlp: int = Field(50, gt=0, description="Neurons per MLP layer.")
    n_layers: int = Field(1, ge=1, description="Residual MLP layers.")
    activation: Literal["relu", "gelu"] = Field("relu", description="MLP and label nonlinearity.")
    in_bias: bool = Field(False, description="Bias in mlp_in.")
    out_bias: bool = Field(False, description="Bias in mlp_out.")
    feature_probability: float = Field(0.01, gt=0, le=1, description="Probability that a feature is on "
                                       "(uniform in [-1, 1] when on).")
    label_coefficients: Literal["ones", "random"] = Field(
        "ones", description="c_i in the labels x_i + act(c_i x_i): 1, or uniform in [1, 2] (seeded by data_seed)."
    )


class InductionConfig(_Sampled):
    """An attention-only transformer continuing [BOS] t_1..t_n (random gap) t_1..t_n
    (lm_saes/toys/induction.py); its accuracy on the repeated half measures induction."""

    kind: Literal["induction"] = "induction"
    vocab_size: int = Field(64, ge=3, description="Tokens, BOS (0) included.")
    half_length: int = Field(8, ge=2, description="n: length of the random sequence that repeats.")
    max_gap: int = Field(8, ge=0, description="The repeat follows after 0..max_gap random tokens (uniform), so "
                         "only induction, not a fixed offset, predicts it.")
    d_model: int = Field(32, gt=0, description="Residual width.")
    n_heads: int = Field(2, gt=0, description="Attention heads per layer; must divide d_model.")
    n_layers: int = Field(2, ge=1, description="Attention layers (induction needs 2).")

    @model_validator(mode="after")
    def _heads_divide(self) -> "InductionConfig":
        if self.d_model % self.n_heads:
            raise ValueError(f"n_heads={self.n_heads} must divide d_model={self.d_model}")
        return self


ToyConfig = Annotated[Union[ModularAdditionConfig, TMSConfig, ResidMLPConfig, InductionConfig],
                      Field(discriminator="kind")]


class ToyTrainConfig(StrictModel):
    """`lm-saes toy`: train a toy model into a toy directory, with checkpoints along the way."""

    toy: ToyConfig
    output_dir: Path = Field(description="Toy directory to write (config.json, weights, log, checkpoints/).")
    steps: int = Field(2000, gt=0, description="Optimizer steps.")
    batch_size: int = Field(128, gt=0, description="Examples per step: drawn with replacement from the train set, "
                            "or fresh from the toy's distribution (tms, resid_mlp, induction).")
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
