"""POST /api/dictionaries/{name}/infer: the most active features at each token of a text, and one
feature's activation at every token."""

from __future__ import annotations

import logging

from fastapi import APIRouter, HTTPException, Query

from lm_saes.server.deps import EngineDep, StoreDep, require_dictionary
from lm_saes.server.inference import InferenceInputError, InferenceUnavailable
from lm_saes.server.schemas import IndexedLine, InferRequest, InferResponse, TokenFeature
from lm_saes.store.summaries import summary_lines

log = logging.getLogger(__name__)
router = APIRouter(prefix="/dictionaries/{name}", tags=["inference"])


@router.post("/infer", response_model=InferResponse)
def infer(store: StoreDep, engine: EngineDep, name: str, body: InferRequest,
          analysis: str = Query("default", min_length=1, description="Whose summary lines to give.")) -> InferResponse:
    """Run the dictionary's model to its input hook and encode (loaded on first use; writes nothing)."""
    record = require_dictionary(store, name)
    try:
        result = engine.run(record, body.text, body.top, body.feature)
    except InferenceInputError as e:
        raise HTTPException(422, str(e)) from e
    except InferenceUnavailable as e:
        log.warning("%s: %s", e, e.__cause__ or "")  # the cause names paths: for the log, not the body
        raise HTTPException(409, str(e)) from e
    listed = {i for row in result.features for i, _ in row} | ({body.feature} if body.feature is not None else set())
    lines = summary_lines(store, store.analysis(name, analysis), listed)
    return InferResponse(
        tokens=result.tokens, token_ids=result.token_ids,
        features=[[TokenFeature(index=i, act=a) for i, a in row] for row in result.features],
        feature=body.feature, feature_acts=result.feature_acts,
        summaries=[IndexedLine(index=i, **line) for i, line in sorted(lines.items())],
        truncated=result.truncated,
    )
