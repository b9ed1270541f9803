"""`lm-saes serve`: a read-only HTTP API over the analysis store, and the built web UI.

    from lm_saes.config import StoreConfig
    from lm_saes.server import create_app

    app = create_app(StoreConfig())          # FastAPI; the store opens when the app starts

Layout: ``app.py`` builds the app (lifespan, error handlers, gzip, routers, UI), ``deps.py`` holds
the injected dependencies (the store, the inference engine), ``routers/`` one module per resource
(health, dictionaries, features, inference, steering, sweeps), ``schemas.py`` the request and
response models (not the MongoDB documents), ``inference.py`` the lazily loaded model + dictionary
(encoding text, steering through ``lm_saes.models.steering``), ``static.py`` the UI and the status
of its pages.

Importing this package imports neither torch nor transformers: inference loads them on first use.
"""

from lm_saes.server.app import create_app

__all__ = ["create_app"]
