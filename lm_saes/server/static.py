"""The built web UI (``ui/`` -> ``lm_saes/server/static/``) at ``/``, with a single-page-app fallback.

Any GET outside ``/api`` that is not a file of the build returns ``index.html``, so that a client
route such as ``/dictionaries/topk/features/7`` survives a reload. The answer's status says
whether the page exists: the build's ``routes.json`` (written from ``ui/src/routes.json``, the
UI's own route table) lists the page patterns, and a page of a dictionary, feature or sweep the
store lacks is a 404 too (the UI then shows its not-found page). Hashed build assets
(``assets/*``, their names change with their content) are cached for a year; ``index.html`` is
revalidated on every load. Without a build, ``/`` explains how to make one.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, Response

from lm_saes.errors import StoreError
from lm_saes.server.errors import shown

log = logging.getLogger(__name__)

DEFAULT_STATIC_DIR = Path(__file__).parent / "static"
BUILD_COMMAND = "npm --prefix ui ci && npm --prefix ui run build"
IMMUTABLE = "public, max-age=31536000, immutable"  # hashed assets: a new build has new names
REVALIDATE = "no-cache"
NOT_BUILT = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>lm-saes</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 3em auto">
<h1>lm-saes</h1>
<p>The web UI is not built: the server's static directory has no <code>index.html</code>.</p>
<p>Build it from the repository root with</p>
<pre>{BUILD_COMMAND}</pre>
<p>and restart <code>lm-saes serve</code>. The API is up meanwhile: <a href="/api/docs">/api/docs</a>.</p>
</body></html>
"""

Exists = Callable[[Request, str, dict[str, str]], bool]  # (request, route name, its parameters) -> found


def mount_ui(app: FastAPI, static_dir: Path | None = None, exists: Exists | None = None) -> None:
    """Serve ``static_dir`` (default: the package's ``static/``) for every GET outside ``/api``;
    ``exists`` says whether a matched page's dictionary, feature or sweep is there (default: yes).

    Register it after the API routers: it catches every remaining path.
    """
    root = Path(static_dir or DEFAULT_STATIC_DIR).resolve()
    routes = _routes(root)

    @app.get("/{path:path}", include_in_schema=False)
    def ui(path: str, request: Request) -> Response:
        if path == "api" or path.startswith("api/"):
            raise HTTPException(404, f"no API route {shown('/' + path)}; see /api/docs")
        index = root / "index.html"
        asset = _file_of(root, path) if path else None
        if asset is not None:
            cache = IMMUTABLE if path.startswith("assets/") else REVALIDATE
            return FileResponse(asset, headers={"Cache-Control": cache})
        if not index.is_file():
            return HTMLResponse(NOT_BUILT, status_code=200)
        found = page_of(routes, "/" + path)
        ok = found is not None and (exists is None or exists(request, *found))
        return FileResponse(index, status_code=200 if ok else 404, headers={"Cache-Control": REVALIDATE})


def _routes(root: Path) -> dict[str, str]:
    """The UI's page patterns by name (``/dictionaries/:name``...), from the build's routes.json."""
    try:
        routes = json.loads((root / "routes.json").read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in routes.items()} if isinstance(routes, dict) else {}


def page_of(routes: dict[str, str], path: str) -> tuple[str, dict[str, str]] | None:
    """(route name, parameters) of the first pattern matching ``path``, as the UI's router matches
    (``ui/src/router.tsx``: trailing slashes ignored, ``:x`` takes one non-empty segment); None
    for a path no page has. Without a routes table every path is a page."""
    if not routes:
        return "", {}
    segments = [s for s in path.rstrip("/").split("/") if s]
    for name, pattern in routes.items():
        parts = [p for p in pattern.split("/") if p]
        if len(parts) == len(segments) and all(p.startswith(":") or p == s for p, s in zip(parts, segments)):
            return name, {p[1:]: s for p, s in zip(parts, segments) if p.startswith(":")}
    return None


def stored_page(request: Request, route: str, params: dict[str, str]) -> bool:
    """Whether the store holds what a page shows: its dictionary or decomposition (and the feature
    or component index within its size) or its sweep. A store that does not answer counts as yes: the page says what is wrong."""
    try:
        store = request.app.state.stores.get()
        if route == "sweep":
            return store.sweep(params["name"]) is not None
        if "name" in params:  # every other page with a name is a dictionary's
            record = store.dictionary(params["name"])
            if record is None or (route in ("decomposition", "component") and record.get("kind") != "decomposition"):
                return False
            if "index" in params:
                d_sae = record.get("d_sae")
                return params["index"].isdigit() and (not d_sae or int(params["index"]) < d_sae)
    except StoreError as e:
        log.warning("page %s: %s", route, e)
    return True


def _file_of(root: Path, path: str) -> Path | None:
    """The file ``path`` names inside ``root``, or None (also for names the OS refuses: too long, NUL)."""
    try:
        candidate = (root / path).resolve()
        return candidate if candidate.is_relative_to(root) and candidate.is_file() else None
    except (OSError, ValueError):
        return None
