"""SPD decompositions analyzed by `lm-saes analyze` (kind "decomposition" among the dictionaries):
one decomposition with its matrices and their subcomponents, one subcomponent, and (for a language
model's) which subcomponents of a matrix are important at each token of a text."""

from __future__ import annotations

import logging

from fastapi import APIRouter, HTTPException, Path, Query

from lm_saes.server.deps import EngineDep, StoreDep, require_analysis, require_dictionary
from lm_saes.server.errors import shown
from lm_saes.server.inference import InferenceInputError, InferenceUnavailable
from lm_saes.server.decomposition_schemas import (
    ComponentDetail, DecompositionDetail, ImportanceRequest, ImportanceResponse, TokenComponent,
)
from lm_saes.server.schemas import AnalysisSummary
from lm_saes.server.spd_inference import importances
from lm_saes.store import Store
from lm_saes.store.documents import INT64_MAX
from lm_saes.store.store import MAX_PAGE

log = logging.getLogger(__name__)
router = APIRouter(prefix="/decompositions", tags=["decompositions"])

AnalysisQuery = Query("default", min_length=1, description="Analysis name.")
DECOMPOSITION = "decomposition"


def require_decomposition(store: Store, name: str) -> dict:
    """The decomposition's record, or 404 (naming the dictionary page when ``name`` is a dictionary)."""
    record = require_dictionary(store, name)
    if record.get("kind") != DECOMPOSITION:
        kind = record.get("kind") or "sparse"
        raise HTTPException(404, f"{shown(name)} is a {kind} dictionary, not an SPD decomposition; "
                                 f"see /dictionaries/{name}")
    return record


def all_features(store: Store, name: str, analysis: str, total: int) -> list[dict]:
    """Every feature summary of the analysis, densest first."""
    out: list[dict] = []
    while len(out) < total:
        page = store.features(name, analysis, sort="density", descending=True, skip=len(out), limit=MAX_PAGE)
        if not page:
            break
        out += page
    return out


@router.get("/{name}", response_model=DecompositionDetail)
def get_decomposition(store: StoreDep, name: str, analysis: str = AnalysisQuery) -> DecompositionDetail:
    """The decomposition with each matrix's metrics, its subcomponents densest first (from analysis
    ``analysis``; none while it has none) and, for a matrix with a side of width 2, its plane."""
    record = require_decomposition(store, name)
    run = store.analysis(name, analysis)
    by_module: dict = {}
    if run is not None:
        for doc in all_features(store, name, analysis, record.get("d_sae") or 0):
            by_module.setdefault(doc.get("module"), []).append(doc)
    modules = [{**m, "components": by_module.get(m["name"], [])} for m in record.get("modules", [])]
    return DecompositionDetail.model_validate({
        **record, "modules": modules, "analysis": AnalysisSummary.of(run),
        "ci_threshold": ((run or {}).get("summary", {}).get("ci_threshold")
                         or record.get("config", {}).get("ci_threshold")),
    })


@router.get("/{name}/components/{index}", response_model=ComponentDetail)
def get_component(
    store: StoreDep, name: str, index: int = Path(ge=0, le=INT64_MAX), analysis: str = AnalysisQuery,
) -> ComponentDetail:
    """Subcomponent ``index`` (its feature index: component c of a matrix is its ``first`` + c): its
    statistics, top and band examples (toys: the inputs), histogram, norms and co-activations."""
    record = require_decomposition(store, name)
    require_analysis(store, name, analysis)
    total = record.get("d_sae") or 0
    doc = store.feature(name, index, analysis)
    if doc is None:
        valid = f"; its components are 0-{total - 1}" if total else ""
        raise HTTPException(404, f"decomposition {shown(name)} has no component {index} in analysis "
                                 f"{shown(analysis)}{valid}")
    module = next((m for m in record.get("modules", []) if m["name"] == doc.get("module")), {})
    return ComponentDetail.model_validate({
        **doc, "C": module.get("C", 0), "first": module.get("first", 0),
        "prev": index - 1 if index > 0 else None, "next": index + 1 if index + 1 < total else None,
    })


@router.post("/{name}/infer", response_model=ImportanceResponse)
def infer(store: StoreDep, engine: EngineDep, name: str, body: ImportanceRequest) -> ImportanceResponse:
    """Run the target model on ``text`` and give, at each token, the subcomponents of ``module`` whose
    causal importance exceeds the decomposition's threshold (loaded on first use; writes nothing)."""
    record = require_decomposition(store, name)
    modules = {m["name"]: m for m in record.get("modules", [])}
    module = body.module or next(iter(modules), "")
    if module not in modules:
        raise HTTPException(422, f"module {shown(module)} is not decomposed in {shown(name)}; decomposed: "
                                 f"{', '.join(modules)}")
    try:
        result = importances(engine, record, body.text, module, body.top)
    except InferenceInputError as e:
        raise HTTPException(422, str(e)) from e
    except InferenceUnavailable as e:
        log.warning("%s: %s", e, e.__cause__ or "")  # the cause names paths: for the log, not the body
        raise HTTPException(409, str(e)) from e
    first = modules[module]["first"]
    return ImportanceResponse(
        tokens=result.tokens, token_ids=result.token_ids, module=module, first=first, C=modules[module]["C"],
        ci_threshold=result.ci_threshold,
        components=[[TokenComponent(index=first + c, component=c, ci=v) for c, v in row] for row in result.components],
        l0=result.l0, truncated=result.truncated,
    )
