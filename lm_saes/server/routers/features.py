"""Features of a dictionary's analysis: a filtered page, one feature, a random one, token search."""

from __future__ import annotations

import math
import random
from typing import Literal

from fastapi import APIRouter, HTTPException, Path, Query

from lm_saes.server.deps import StoreDep, require_analysis, require_dictionary
from lm_saes.server.errors import shown
from lm_saes.server.schemas import (
    ExplanationRecord, FeatureDetail, FeaturePage, FeatureSummary, RandomFeature, TokenMatch, TokenSearch,
)
from lm_saes.store.documents import INT64_MAX
from lm_saes.store.explanations import feature_explanations
from lm_saes.store.search import search_tokens as find_by_token
from lm_saes.store.summaries import summary_line, summary_lines

router = APIRouter(prefix="/dictionaries/{name}", tags=["features"])

AnalysisQuery = Query("default", min_length=1, description="Analysis name.")
FIRES = math.nextafter(0.0, 1.0)  # the smallest density > 0: min_density that keeps features that fire
Sort = Literal["index", "density", "max_activation", "simulation", "detection", "fuzzing"]


@router.get("/features", response_model=FeaturePage)
def list_features(
    store: StoreDep,
    name: str,
    analysis: str = AnalysisQuery,
    sort: Sort = Query("index", description="A score (simulation, detection, fuzzing) lists only the "
                       "features whose shown explanation has it."),
    order: Literal["asc", "desc"] = "asc",
    min_density: float | None = Query(None, ge=0, le=1),
    max_density: float | None = Query(None, ge=0, le=1),
    search: str | None = Query(None, max_length=200, description="Words of the interpretation or explanation."),
    skip: int = Query(0, ge=0, le=INT64_MAX),
    limit: int = Query(50, ge=1, le=500),
) -> FeaturePage:
    require_dictionary(store, name)
    require_analysis(store, name, analysis)
    filters = dict(min_density=min_density, max_density=max_density, search=search)
    items = store.features(name, analysis, sort=sort, descending=order == "desc", skip=skip, limit=limit, **filters)
    return FeaturePage(total=store.count_features(name, analysis, scored=sort, **filters),
                       items=[FeatureSummary.model_validate({**doc, "summary": summary_line(doc)}) for doc in items])


@router.get("/features/{index}", response_model=FeatureDetail)
def get_feature(
    store: StoreDep, name: str, index: int = Path(ge=0, le=INT64_MAX), analysis: str = AnalysisQuery,
) -> FeatureDetail:
    """The whole feature document with its summary line, its neighbours' summary lines, and the
    indices before and after it."""
    record = require_dictionary(store, name)
    run = require_analysis(store, name, analysis)
    d_sae = record.get("d_sae") or run.get("n_features")
    doc = store.feature(name, index, analysis)
    if doc is None:
        valid = f"; its features are 0-{d_sae - 1}" if d_sae else ""
        raise HTTPException(404, f"dictionary {shown(name)} has no feature {index} in analysis {shown(analysis)}{valid}")
    d_sae = d_sae or index + 1
    neighbors = doc.get("neighbors") or []
    lines = summary_lines(store, run, [n["index"] for n in neighbors if isinstance(n, dict) and "index" in n])
    return FeatureDetail.model_validate({
        **doc, "summary": summary_line(doc),
        "neighbors": [{**n, "summary": lines.get(n.get("index"))} for n in neighbors if isinstance(n, dict)],
        "prev": index - 1 if index > 0 else None, "next": index + 1 if index + 1 < d_sae else None,
    })


@router.get("/features/{index}/explanations", response_model=list[ExplanationRecord])
def get_explanations(
    store: StoreDep, name: str, index: int = Path(ge=0, le=INT64_MAX), analysis: str = AnalysisQuery,
) -> list[ExplanationRecord]:
    """Every explainer's record of the feature (`lm-saes interpret`): the explanation, its scores, the
    prompts sent and the raw replies, newest first; [] when it was never interpreted."""
    require_dictionary(store, name)
    require_analysis(store, name, analysis)
    return [ExplanationRecord.model_validate(doc) for doc in feature_explanations(store, name, index, analysis)]


@router.get("/random", response_model=RandomFeature)
def random_feature(store: StoreDep, name: str, analysis: str = AnalysisQuery) -> RandomFeature:
    """A feature drawn uniformly among those that fire (density > 0)."""
    require_dictionary(store, name)
    require_analysis(store, name, analysis)
    n = store.count_features(name, analysis, min_density=FIRES)
    if n == 0:
        raise HTTPException(404, f"no feature of {shown(name)} fires in analysis {shown(analysis)}")
    page = store.features(name, analysis, min_density=FIRES, skip=random.randrange(n), limit=1)
    if not page:  # the analysis was replaced between the two queries
        raise HTTPException(404, f"analysis {shown(analysis)} of {shown(name)} changed; try again")
    return RandomFeature(index=page[0]["index"])


@router.get("/search", response_model=TokenSearch)
def search_tokens(
    store: StoreDep,
    name: str,
    q: str = Query(min_length=1, max_length=200, description="A token; compared stripped and case-insensitively."),
    analysis: str = AnalysisQuery,
    limit: int = Query(20, ge=1, le=500),
) -> TokenSearch:
    """Features whose top contexts peak on the token ``q``, most matching contexts first."""
    if not q.strip():
        raise HTTPException(422, "q must contain a non-whitespace token")
    require_dictionary(store, name)
    run = require_analysis(store, name, analysis)
    found = find_by_token(store, name, q, analysis, limit)
    lines = summary_lines(store, run, [doc["index"] for doc in found])
    return TokenSearch(items=[TokenMatch.model_validate({**doc, "summary": lines.get(doc["index"])}) for doc in found])

