"""The built web UI (``ui/`` -> ``lm_saes/server/static/``) at ``/``, with a single-page-app fallback.

Any GET outside ``/api`` that is not a file of the build returns ``index.html``, so that a client
route such as ``/dictionaries/topk/features/7`` survives a reload. Without a build, ``/`` explains
how to make one.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse, HTMLResponse, Response

from lm_saes.server.errors import shown

DEFAULT_STATIC_DIR = Path(__file__).parent / "static"
BUILD_COMMAND = "npm --prefix ui ci && npm --prefix ui run build"
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


def mount_ui(app: FastAPI, static_dir: Path | None = None) -> None:
    """Serve ``static_dir`` (default: the package's ``static/``) for every GET outside ``/api``.

    Register it after the API routers: it catches every remaining path.
    """
    root = Path(static_dir or DEFAULT_STATIC_DIR).resolve()

    @app.get("/{path:path}", include_in_schema=False)
    def ui(path: str) -> Response:
        if path == "api" or path.startswith("api/"):
            raise HTTPException(404, f"no API route {shown('/' + path)}; see /api/docs")
        index = root / "index.html"
        asset = _file_of(root, path) if path else None
        if asset is not None:
            return FileResponse(asset)
        if index.is_file():
            return FileResponse(index, headers={"Cache-Control": "no-cache"})
        return HTMLResponse(NOT_BUILT, status_code=200)


def _file_of(root: Path, path: str) -> Path | None:
    """The file ``path`` names inside ``root``, or None (also for names the OS refuses: too long, NUL)."""
    try:
        candidate = (root / path).resolve()
        return candidate if candidate.is_relative_to(root) and candidate.is_file() else None
    except (OSError, ValueError):
        return None
