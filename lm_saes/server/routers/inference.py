"""POST /api/dictionaries/{name}/infer: the most active features at each token of a text."""

from __future__ import annotations

import logging

from fastapi import APIRouter, HTTPException

from lm_saes.server.deps import EngineDep, StoreDep, require_dictionary
from lm_saes.server.inference import InferenceUnavailable
from lm_saes.server.schemas import InferRequest, InferResponse, TokenFeature

log = logging.getLogger(__name__)
router = APIRouter(prefix="/dictionaries/{name}", tags=["inference"])


@router.post("/infer", response_model=InferResponse)
def infer(store: StoreDep, engine: EngineDep, name: str, body: InferRequest) -> InferResponse:
    """Run the dictionary's model to its input hook and encode (loaded on first use; writes nothing)."""
    record = require_dictionary(store, name)
    try:
        result = engine.run(record, body.text, body.top)
    except InferenceUnavailable as e:
        log.warning("%s: %s", e, e.__cause__ or "")  # the cause names paths: for the log, not the body
        raise HTTPException(409, str(e)) from e
    return InferResponse(
        tokens=result.tokens,
        features=[[TokenFeature(index=i, act=a) for i, a in row] for row in result.features],
        truncated=result.truncated,
    )
