"""GET /api/dictionaries and /api/dictionaries/{name}: the stored dictionaries and their analyses."""

from __future__ import annotations

from fastapi import APIRouter, Query

from lm_saes.server.deps import StoreDep, require_dictionary
from lm_saes.server.schemas import AnalysisSummary, DictionaryDetail, DictionarySummary
from lm_saes.store.explanations import interpretations

router = APIRouter(prefix="/dictionaries", tags=["dictionaries"])


@router.get("", response_model=list[DictionarySummary])
def list_dictionaries(store: StoreDep) -> list[DictionarySummary]:
    return [DictionarySummary.model_validate(record) for record in store.dictionaries()]


@router.get("/{name}", response_model=DictionaryDetail)
def get_dictionary(store: StoreDep, name: str, analysis: str = Query("default", min_length=1)) -> DictionaryDetail:
    """The dictionary record with the summary of analysis ``analysis`` (null if it has none) and the
    mean scores of each explainer that interpreted it."""
    record = require_dictionary(store, name)
    run = store.analysis(name, analysis)
    explained = [s for s in interpretations(store, name)
                 if s.get("analysis") == analysis and run is not None and s.get("analysis_id") == run["id"]]
    return DictionaryDetail.model_validate({**record, "analysis": AnalysisSummary.of(run), "interpretations": explained})
