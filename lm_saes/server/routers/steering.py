"""POST /api/dictionaries/{name}/features/{index}/steer: continuations of a prompt with the feature's
decoder direction written into the model, beside the unsteered ones (lm_saes.models.steering)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, HTTPException, Path

from lm_saes.server.deps import EngineDep, StoreDep, require_dictionary
from lm_saes.server.errors import shown
from lm_saes.server.inference import InferenceInputError, InferenceUnavailable
from lm_saes.server.schemas import Continuation, ContinuationPair, SteerRequest, SteerResponse
from lm_saes.store.documents import INT64_MAX

log = logging.getLogger(__name__)
router = APIRouter(prefix="/dictionaries/{name}/features/{index}", tags=["steering"])


@router.post("/steer", response_model=SteerResponse)
def steer(store: StoreDep, engine: EngineDep, name: str, body: SteerRequest,
          index: int = Path(ge=0, le=INT64_MAX)) -> SteerResponse:
    """Greedy and sampled continuations of ``prompt``, steered and not, ``max_new_tokens`` each or
    fewer when ``timeout_s`` runs out (one forward per token for all four; loaded on first use)."""
    record = require_dictionary(store, name)
    d_sae = record.get("d_sae")
    if d_sae and index >= d_sae:
        raise HTTPException(404, f"dictionary {shown(name)} has no feature {index}; its features are 0-{d_sae - 1}")
    try:
        out = engine.steer(record, index, body.prompt, body.mode, body.strength, body.max_new_tokens,
                           body.temperature, body.seed, body.timeout_s, body.hook)
    except InferenceInputError as e:
        raise HTTPException(422, str(e)) from e
    except InferenceUnavailable as e:
        log.warning("%s: %s", e, e.__cause__ or "")  # the cause names paths: for the log, not the body
        raise HTTPException(409, str(e)) from e

    def pair(steered: str) -> ContinuationPair:
        made = {s: out.continuations[(steered, s)] for s in ("greedy", "sampled")}
        return ContinuationPair(**{s: Continuation(text="".join(c.tokens), tokens=c.tokens, token_ids=c.token_ids)
                                   for s, c in made.items()})

    return SteerResponse(feature=index, hook=out.hook, mode=body.mode, strength=body.strength,
                         prompt_tokens=out.prompt_tokens, prompt_truncated=out.prompt_truncated,
                         stopped=out.stopped, unsteered=pair("unsteered"), steered=pair("steered"))
