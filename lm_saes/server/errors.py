"""What an error body may hold: a short message naming the problem and the fix, never a filesystem
path, a port, or more than :data:`MAX_SHOWN` characters of what the client sent.

Client mistakes are 4xx (404 for what the store lacks, 422 for a malformed parameter or body);
a database that does not answer is 503 with a fixed message, the details going to the server's
log, where the person who runs the server reads them.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from lm_saes.errors import NoStoreError, StoreError

log = logging.getLogger(__name__)

MAX_SHOWN = 60  # characters of a client's value echoed in an error message
MAX_MESSAGE = 300  # characters of a validation message
NO_STORE = "no analysis store yet: run `lm-saes analyze`, or start the server where its store is (its log says where it looked)"
STORE_DOWN = "the analysis store is not answering; the server retries on the next request (its log says why)"


def shown(value: object) -> str:
    """``value`` quoted for an error message (repr: lone surrogates escaped), cut to MAX_SHOWN
    characters with the length said."""
    text = str(value)
    if len(text) <= MAX_SHOWN:
        return repr(text)
    return f"{text[:MAX_SHOWN]!r}... ({len(text):,} characters)"


def install_error_handlers(app: FastAPI) -> None:
    """Register the store-failure (503) and validation (422) handlers on ``app``."""

    @app.exception_handler(StoreError)
    async def store_unavailable(request: Request, error: StoreError) -> JSONResponse:
        log.warning("%s %s: %s", request.method, request.url.path[:200], error)
        if isinstance(error, NoStoreError):
            return JSONResponse({"detail": NO_STORE}, status_code=503)
        request.app.state.stores.failed()  # reopen on the next request
        return JSONResponse({"detail": STORE_DOWN}, status_code=503)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        """FastAPI's 422 without the ``input`` and ``ctx`` it echoes (a 100 kB text would come back)."""
        return JSONResponse({"detail": [_bounded(e) for e in error.errors()]}, status_code=422)


def _bounded(error: dict) -> dict:
    """A validation error as ``{type, loc, msg}``: a client's key in ``loc`` is cut and escaped."""
    loc = [part if isinstance(part, int) else _escaped(str(part))[:MAX_SHOWN] for part in error.get("loc", ())]
    return {"type": str(error.get("type", "")), "loc": loc, "msg": _escaped(str(error.get("msg", "")))[:MAX_MESSAGE]}


def _escaped(text: str) -> str:
    """``text`` with what UTF-8 cannot encode (lone surrogates) as backslash escapes."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
