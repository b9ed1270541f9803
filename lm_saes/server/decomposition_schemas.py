"""Response and request models of the SPD decomposition routes (``routers/decompositions.py``); a
decomposition's examples extend the dictionaries' (``schemas.Example``) with its inner activations
and, for a toy, its inputs."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from lm_saes.server.schemas import AnalysisSummary, Band, Example, Histogram, ModuleSummary


class Plane(BaseModel):
    """A matrix with a side of width 2 (TMS 5-2's): its target's feature directions in that plane and
    each subcomponent's direction for the feature it weighs most (lm_saes.analysis.decomposition.plane)."""

    target: list[list[float]] = Field(description="Each feature's 2-d direction in the target's matrix.")
    components: list[list[float]] = Field(description="Each subcomponent's 2-d direction, in component order.")
    feature: list[int] = Field(description="The feature each subcomponent weighs most.")


class ComponentSummary(BaseModel):
    index: int = Field(description="Its feature index in the analysis.")
    component: int
    density: float
    max_activation: float
    mean_activation: float | None = None
    n_fired: int | None = None
    decoder_norm: float | None = Field(None, description="|V_c| |U_c|: the Frobenius norm of its rank-one matrix.")
    v_norm: float | None = None
    u_norm: float | None = None


class ModuleDetail(ModuleSummary):
    plane: Plane | None = None
    components: list[ComponentSummary] = Field([], description="Its subcomponents, densest first.")


class DecompositionDetail(BaseModel):
    name: str
    path: str | None = None
    d_sae: int | None = Field(None, description="Subcomponents of all matrices together.")
    config: dict[str, Any] = Field({}, description="The SPD settings it was trained with.")
    source: dict[str, Any] = Field({}, description="Its target (a toy directory or a language model and its data).")
    metrics: dict[str, Any] = {}
    ci_threshold: float | None = Field(None, description="A subcomponent fires where its causal importance exceeds this.")
    analysis: AnalysisSummary | None = None
    modules: list[ModuleDetail] = []


class ToyInput(BaseModel):
    features: list[int] = Field(description="The input's nonzero features, largest magnitude first.")
    values: list[float]


class ComponentExample(Example):
    inner: list[float] | None = Field(None, description="The inner activation x . V_c at every shown token.")
    input: ToyInput | None = Field(None, description="A toy's input (instead of text).")


class ComponentBand(Band):
    examples: list[ComponentExample]


class Coactivation(BaseModel):
    index: int
    module: str
    component: int
    count: int = Field(description="Analyzed tokens on which both fired.")
    p: float = Field(description="P(it fires | this one fires).")
    jaccard: float = Field(description="Tokens both fired on over tokens either fired on.")


class ComponentDetail(ComponentSummary):
    module: str
    C: int = Field(description="Subcomponents of its matrix.")
    first: int = Field(description="The feature index of its matrix's subcomponent 0.")
    n_contexts: int | None = None
    top_contexts: list[ComponentExample] = []
    quantiles: list[ComponentBand] = []
    histogram: Histogram = Histogram()
    coactivations: list[Coactivation] | None = Field(None, description="Null when the analysis counted none "
                                                     "(over 4096 subcomponents).")
    prev: int | None = None
    next: int | None = None


class ImportanceRequest(BaseModel):
    model_config = {"extra": "forbid"}

    text: str = Field(min_length=1, max_length=2000, description="Text to run through the target model.")
    module: str | None = Field(None, min_length=1, max_length=200, description="The decomposed matrix; default "
                               "the first.")
    top: int = Field(10, ge=1, le=1000, description="Most important subcomponents kept per token.")


class TokenComponent(BaseModel):
    index: int = Field(description="Its feature index (the matrix's first + component).")
    component: int
    ci: float = Field(description="Its causal importance at the token.")


class ImportanceResponse(BaseModel):
    tokens: list[str]
    token_ids: list[int] = []
    module: str
    first: int
    C: int
    ci_threshold: float
    components: list[list[TokenComponent]] = Field(description="Per token: the subcomponents above the threshold, "
                                                   "most important first (at most `top`).")
    l0: list[int] = Field(description="Per token: how many of the matrix's subcomponents are above the threshold.")
    truncated: bool = Field(False, description="Whether the text was cut to the decomposition's context length.")
