"""GET /api/health: whether the server and its database answer."""

from __future__ import annotations

from fastapi import APIRouter

from lm_saes.server.deps import StoreDep
from lm_saes.server.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health)
def health(store: StoreDep) -> Health:
    """``ok`` when the database answers a ping; a StoreError becomes 503 (see app.py)."""
    with store.errors("answering a ping"):
        store.client.admin.command("ping")
    return Health(status="ok", store="ok")
