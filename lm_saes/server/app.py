"""The FastAPI app: the store opened at startup and closed at shutdown, the routers, the UI."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from starlette.middleware.gzip import GZipMiddleware

from lm_saes.config import StoreConfig
from lm_saes.errors import StoreError
from lm_saes.server.deps import StoreHolder
from lm_saes.server.errors import install_error_handlers
from lm_saes.server.inference import InferenceEngine
from lm_saes.server.routers import decompositions, dictionaries, features, health, inference, steering, sweeps
from lm_saes.server.static import mount_ui, stored_page

log = logging.getLogger(__name__)


def create_app(store_cfg: StoreConfig | None = None, static_dir: Path | None = None, device: str = "auto") -> FastAPI:
    """The read-only lm-saes API under ``/api`` and the UI build of ``static_dir`` at ``/``.

    Nothing is opened here: the store opens when the app starts (its lifespan) and closes when it
    stops; ``device`` is where inference loads models ("auto": CUDA when present).
    """
    store_cfg = store_cfg or StoreConfig()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.stores = StoreHolder(store_cfg)
        app.state.engine = InferenceEngine(device)
        try:
            await run_in_threadpool(app.state.stores.get)
        except StoreError as e:  # serve anyway: requests answer 503 until the database is there
            log.warning("%s\nServing anyway: the API answers 503 until the store answers.", e)
        try:
            yield
        finally:
            await run_in_threadpool(app.state.stores.close)

    app = FastAPI(
        title="lm-saes", summary="Browse the features of sparse dictionaries stored by `lm-saes analyze`.",
        lifespan=lifespan, openapi_url="/api/openapi.json", docs_url="/api/docs", redoc_url=None,
    )

    install_error_handlers(app)
    app.add_middleware(GZipMiddleware, minimum_size=1024)  # the UI's bundle, feature documents
    for module in (health, dictionaries, decompositions, features, inference, steering, sweeps):
        app.include_router(module.router, prefix="/api")
    mount_ui(app, static_dir, exists=stored_page)
    return app
