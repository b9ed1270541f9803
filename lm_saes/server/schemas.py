"""Response and request models of the API: what the UI sees, apart from how MongoDB stores it.

Nested payloads of a feature (examples, histograms, logits) mirror the analysis's feature document
(``lm_saes.analysis.documents``); store-internal fields (``analysis_id``, ``peak_tokens``...) are
left out. Unknown keys of stored documents are ignored, never forwarded.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from lm_saes.store.documents import INT64_MAX


class Health(BaseModel):
    status: str
    store: str


class DensityHistogram(BaseModel):
    log10_edges: list[float]
    counts: list[int]
    dead: int


class AnalysisSummary(BaseModel):
    name: str
    n_tokens: int | None = None
    n_contexts: int | None = None
    alive_fraction: float | None = None
    dead_fraction: float | None = None
    density_histogram: DensityHistogram | None = None
    created_at: str | None = None

    @classmethod
    def of(cls, run: dict | None) -> "AnalysisSummary | None":
        """The summary of a stored analysis run (None for no run)."""
        if run is None:
            return None
        return cls.model_validate({**run.get("summary", {}), "name": run["name"], "created_at": run.get("created_at")})


class MeanScore(BaseModel):
    n: int = Field(description="Features scored.")
    mean: float
    low: float = Field(description="Lower end of the 95% confidence interval of the mean (Student's t).")
    high: float = Field(description="Upper end of that interval.")


class InterpretationSummary(BaseModel):
    """One explainer's mean scores over a dictionary's features (`lm-saes interpret`)."""

    explainer: str = Field(description="The explainer's id, e.g. 'lexical' or 'openai:<model>'.")
    kind: Literal["lexical", "openai"] = Field(description="'lexical': the offline baseline, no model.")
    scorer: str | None = None
    model: str | None = None
    n_scored: int = 0
    n_failed: int = 0
    means: dict[Literal["simulation", "detection", "fuzzing"], MeanScore] = {}
    updated_at: str | None = None


class DictionaryDetail(BaseModel):
    name: str
    kind: str | None = None
    d_sae: int | None = None
    d_in: int | None = None
    d_out: int | None = None
    transcoder: bool | None = None
    config: dict[str, Any] = {}
    source: dict[str, Any] = {}
    metrics: dict[str, Any] = {}
    analysis: AnalysisSummary | None = None
    interpretations: list[InterpretationSummary] = Field(
        [], description="Each explainer's mean scores over this analysis, most recent first.")


class ExplanationScores(BaseModel):
    simulation: float | None = Field(None, description="Correlation of simulated and true activations "
                                     "on held-out contexts (OpenAI 2023).")
    detection: float | None = Field(None, description="Balanced accuracy of telling activating held-out "
                                    "contexts from others (Delphi).")
    fuzzing: float | None = Field(None, description="Balanced accuracy of telling the activating tokens "
                                  "from decoys (Delphi).")


class ExplanationSummary(BaseModel):
    """The explanation a feature shows: the last one `lm-saes interpret` wrote for it."""

    text: str
    explainer: str = Field(description="The explainer's id, e.g. 'lexical' or 'openai:<model>'.")
    kind: Literal["lexical", "openai"] = Field(description="'lexical': the offline baseline, no model.")
    status: Literal["scored", "failed"] = Field(description="'failed': a scoring reply could not be used.")
    scores: ExplanationScores = ExplanationScores()


class SummaryLine(BaseModel):
    """The one line a feature is known by (lm_saes.store.summaries): a person's interpretation, else
    its explanation, else its most characteristic tokens."""

    source: Literal["interpretation", "explanation", "tokens"]
    text: str = Field(description="The line; for 'tokens', the tokens as JSON strings.")
    tokens: list[str] = Field([], description="For 'tokens': the peak tokens of its top contexts, the most "
                              "frequent first, as they read (whitespace kept).")


class FeatureSummary(BaseModel):
    index: int
    density: float
    max_activation: float
    mean_activation: float | None = None
    n_fired: int | None = None
    interpretation: str | None = None
    explanation: ExplanationSummary | None = None
    summary: SummaryLine | None = Field(None, description="Null for a feature that never fired.")


class FeaturePage(BaseModel):
    total: int
    items: list[FeatureSummary]


class Example(BaseModel):
    context_id: int
    peak: int
    max: float
    start: int
    tokens: list[str]
    token_ids: list[int] | None = Field(None, description="The tokens' ids (null in analyses written before "
                                        "they were stored).")
    acts: list[float]


class Band(BaseModel):
    band: int
    low: float
    high: float
    n_contexts: int
    examples: list[Example]


class Histogram(BaseModel):
    edges: list[float] = []
    counts: list[int] = []


class LogitEffect(BaseModel):
    token: str
    token_id: int
    value: float


class Logits(BaseModel):
    positive: list[LogitEffect] = []
    negative: list[LogitEffect] = []


class Neighbor(BaseModel):
    index: int
    cosine: float
    summary: SummaryLine | None = None


class FeatureDetail(FeatureSummary):
    n_contexts: int | None = None
    decoder_norm: float | None = None
    top_contexts: list[Example] = []
    quantiles: list[Band] = []
    histogram: Histogram = Histogram()
    logits: Logits = Logits()
    neighbors: list[Neighbor] = []
    prev: int | None = Field(description="The previous feature index, None for the first.")
    next: int | None = Field(description="The next feature index, None for the last.")


class ChatMessage(BaseModel):
    role: str
    content: str


class ModelCall(BaseModel):
    stage: Literal["explain", "simulate", "detect", "fuzz"]
    messages: list[ChatMessage] = []
    reply: str | None = Field(None, description="The raw reply; absent when the endpoint gave none.")


class Failure(BaseModel):
    stage: str
    error: str
    reply: str = Field("", description="The raw reply that could not be used.")


class TokenWeight(BaseModel):
    token: str
    weight: float


class ExplanationRecord(BaseModel):
    """One explainer's whole record of a feature: explanation, scores, prompts and raw replies."""

    explainer: str
    kind: Literal["lexical", "openai"]
    model: str | None = None
    scorer: str | None = None
    status: Literal["scored", "failed"]
    explanation: str | None = None
    scores: ExplanationScores = ExplanationScores()
    tokens: list[TokenWeight] = Field([], description="The lexical explanation's tokens and their share of "
                                      "the activation.")
    failures: list[Failure] = []
    requests: list[ModelCall] = []
    n_contexts: dict[str, int] = Field({}, description="Contexts explained from, and held-out ones scored.")
    created_at: str | None = None


class RandomFeature(BaseModel):
    index: int


class TokenMatch(BaseModel):
    index: int
    density: float
    max_activation: float
    matches: int = Field(description="How many of the feature's top contexts peak on the token.")
    summary: SummaryLine | None = None


class TokenSearch(BaseModel):
    items: list[TokenMatch]


class InferRequest(BaseModel):
    model_config = {"extra": "forbid"}

    text: str = Field(min_length=1, max_length=2000, description="Text to run through the model.")
    top: int = Field(5, ge=1, le=100, description="Most active features kept per token.")
    feature: int | None = Field(None, ge=0, le=INT64_MAX, description="Also this feature's activation at every "
                                "token (feature_acts).")


class TokenFeature(BaseModel):
    index: int
    act: float


class IndexedLine(SummaryLine):
    index: int


class InferResponse(BaseModel):
    tokens: list[str]
    token_ids: list[int] = []
    features: list[list[TokenFeature]]
    feature: int | None = None
    feature_acts: list[float] | None = Field(None, description="The activation of `feature` at every token.")
    summaries: list[IndexedLine] = Field([], description="The summary line of each feature listed, by index.")
    truncated: bool = Field(False, description="Whether the text was cut to the model's context length.")


MAX_NEW_TOKENS = 64
MAX_STRENGTH = 10_000.0
MAX_STEER_SECONDS = 30.0


class SteerRequest(BaseModel):
    model_config = {"extra": "forbid"}

    prompt: str = Field(min_length=1, max_length=2000, description="Text to continue (its end is kept if "
                        "it does not fit the model's context with the new tokens).")
    mode: Literal["add", "clamp"] = Field("add", description="'add': strength times the feature's decoder "
                                          "direction is added at every position; 'clamp': the feature is set "
                                          "to the activation `strength` at every position.")
    strength: float = Field(ge=-MAX_STRENGTH, le=MAX_STRENGTH, allow_inf_nan=False,
                            description="The coefficient of the decoder direction (add), or the activation (clamp).")
    max_new_tokens: int = Field(24, ge=1, le=MAX_NEW_TOKENS)
    temperature: float = Field(1.0, gt=0, le=2, allow_inf_nan=False, description="Of the sampled continuations.")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="Of the sampled continuations (both use the same noise).")
    timeout_s: float = Field(10.0, gt=0, le=MAX_STEER_SECONDS, allow_inf_nan=False,
                             description="Generation stops after this many seconds (stopped = 'time').")
    hook: str | None = Field(None, min_length=1, max_length=200, description="The hook point to steer at; "
                             "default the dictionary's output hook (where its decoder writes).")


class Continuation(BaseModel):
    text: str
    tokens: list[str]
    token_ids: list[int]


class ContinuationPair(BaseModel):
    greedy: Continuation
    sampled: Continuation


class SteerResponse(BaseModel):
    feature: int
    hook: str
    mode: Literal["add", "clamp"]
    strength: float
    prompt_tokens: list[str]
    prompt_truncated: bool
    stopped: Literal["length", "time"] = Field(description="'time': timeout_s ran out before max_new_tokens.")
    unsteered: ContinuationPair
    steered: ContinuationPair


class SweepSummary(BaseModel):
    name: str
    status: str
    updated_at: str | None = None
    n_members: int = Field(description="Rows of kind 'member' (baselines are not counted).")
    n_finished: int = Field(description="Members that finished training.")
    n_failed: int = Field(description="Members whose training failed.")


class SweepRow(BaseModel):
    name: str
    kind: Literal["member", "baseline"]
    variant: str | None = None
    status: Literal["finished", "failed", "pending"]
    params: dict[str, float | int | str | bool] = {}
    metrics: dict[str, float] = {}
    frontier: list[str] = Field([], description="The Pareto fronts (L0 vs a metric) this row lies on.")
    error: str | None = None
    dictionary_dir: str | None = None
    config: dict[str, Any] = Field({}, description="A member's whole training config; {} for a baseline.")
    dictionary: str | None = Field(None, description="The row's dictionary name in the store, once analyzed "
                                   "(a baseline's: '<sweep>.<baseline>', analyzed by `lm-saes interpret`).")
    analyzed: bool = Field(False, description="Whether `dictionary` is in the store with a complete analysis.")
    decomposition: bool = Field(False, description="Whether that analyzed `dictionary` is an SPD decomposition.")


class SweepDetail(BaseModel):
    name: str
    status: str
    updated_at: str | None = None
    output_dir: str | None = None
    varied: list[str] = Field([], description="The swept fields' column labels, in table order.")
    paths: dict[str, str] = Field({}, description="Each label's dotted config field path.")
    metrics: list[str] = Field([], description="The metric columns, in table order.")
    frontiers: dict[str, str] = Field({}, description="Metric -> label of each plot against `x`.")
    x: str = Field("l0", description="The fronts' other axis: 'l0', or an SPD sweep's 'ci_l0' (lm_saes.sweep.spd).")
    interpretability_explainer: str | None = Field(
        None, description="Whose mean simulation score the 'interpretability' metric is, once rows are interpreted.")
    rows: list[SweepRow] = []


class ModuleSummary(BaseModel):
    """One decomposed matrix of a decomposition, as the store lists it."""

    name: str
    kind: str | None = Field(None, description="'linear', 'conv1d', 'embedding' or 'identity'.")
    d_in: int | None = None
    d_out: int | None = None
    C: int = Field(description="Its subcomponents.")
    first: int = Field(description="The feature index of its subcomponent 0 (component c is feature first + c).")
    live: int = Field(description="Subcomponents whose causal importance passed the threshold in the analysis.")
    tied_to: str | None = None
    metrics: dict[str, Any] = Field({}, description="Its own metrics (ci_l0, alive, mmcs, ml2r, final_ci_l0...).")


class DictionarySummary(BaseModel):
    name: str
    kind: str | None = None
    d_sae: int | None = None
    d_in: int | None = None
    analyses: list[str] = []
    metrics: dict[str, Any] = {}
    source: dict[str, Any] = {}
    modules: list[ModuleSummary] = Field([], description="A decomposition's matrices; [] for a dictionary.")
