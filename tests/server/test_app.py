"""The app as a whole: the UI with its single-page fallback, OpenAPI, read-only routes, light import."""

from __future__ import annotations

import subprocess
import sys

from fastapi.testclient import TestClient

from lm_saes.server import create_app
from lm_saes.server.static import BUILD_COMMAND, page_of
from tests.server.served import D_SAE, NAME, SWEEP


def test_the_ui_is_served_with_a_single_page_fallback_whose_status_says_if_the_page_exists(client, swept):
    index = client.get("/")
    assert index.status_code == 200 and "id=root" in index.text and index.headers["cache-control"] == "no-cache"
    for route in (f"/dictionaries/{NAME}", f"/dictionaries/{NAME}/features/7", f"/dictionaries/{NAME}/features/7/",
                  f"/dictionaries/{NAME}/infer", f"/sweeps/{SWEEP}"):
        response = client.get(route)
        assert response.status_code == 200 and response.text == index.text, route
    for route in ("/dictionaries", "/assets/missing.js", "/no/such/page", "/dictionaries/nope",
                  f"/dictionaries/{NAME}/features/{D_SAE}", f"/dictionaries/{NAME}/features/x",
                  "/dictionaries/nope/infer", "/sweeps/nope"):
        response = client.get(route)  # the UI, which shows its not-found page, with the status to match
        assert response.status_code == 404 and response.text == index.text, route
    assert client.get("/../../etc/passwd").text == index.text  # never outside the build
    for route in ("/api", "/api/nothing", "/api/dictionaries/tiny-sae/nothing"):
        response = client.get(route)
        assert response.status_code == 404 and "detail" in response.json(), route


def test_assets_are_compressed_and_the_hashed_ones_cached_for_a_year(client):
    asset = client.get("/assets/app.js", headers={"Accept-Encoding": "gzip"})
    assert asset.status_code == 200 and asset.text == "console.log('ui') // " + "x" * 2000
    assert asset.headers["content-encoding"] == "gzip" and int(asset.headers["content-length"]) < 200
    assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"
    plain = client.get("/assets/app.js", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers and plain.text == asset.text
    api = client.get(f"/api/dictionaries/{NAME}/features", params={"limit": 50}, headers={"Accept-Encoding": "gzip"})
    assert api.headers["content-encoding"] == "gzip" and api.json()["total"] == D_SAE


def test_page_patterns_match_as_the_ui_router_does():
    routes = {"home": "/", "dictionary": "/dictionaries/:name", "feature": "/dictionaries/:name/features/:index"}
    assert page_of(routes, "/") == ("home", {})
    assert page_of(routes, "/dictionaries/a%20b/") == ("dictionary", {"name": "a%20b"})
    assert page_of(routes, "/dictionaries/d/features/3") == ("feature", {"name": "d", "index": "3"})
    assert page_of(routes, "/dictionaries") is None and page_of(routes, "/dictionaries/d/x") is None
    assert page_of({}, "/anything") == ("", {})  # a build without routes.json: every path is a page


def test_names_the_filesystem_refuses_get_the_ui(client):
    index = client.get("/").text
    for route in ("/" + "a" * 10_000, "/a%00b", "/assets/%00", "/" + "/".join(["d"] * 3000)):
        response = client.get(route)  # too long for a file name, or a NUL: not a 500
        assert response.status_code == 404 and response.text == index, route[:40]


def test_without_a_build_the_root_says_how_to_build(stored, tmp_path):
    with TestClient(create_app(stored.store, static_dir=tmp_path, device="cpu")) as client:
        response = client.get("/dictionaries/x")
        assert response.status_code == 200 and BUILD_COMMAND in response.text
        assert str(tmp_path) not in response.text  # the page names no filesystem path
        assert client.get("/api/health").json()["status"] == "ok"


def test_openapi_lists_the_read_only_api(client):
    spec = client.get("/api/openapi.json").json()
    methods = {(path, method) for path, ops in spec["paths"].items() for method in ops}
    assert methods == {
        ("/api/health", "get"), ("/api/dictionaries", "get"), ("/api/dictionaries/{name}", "get"),
        ("/api/dictionaries/{name}/features", "get"), ("/api/dictionaries/{name}/features/{index}", "get"),
        ("/api/dictionaries/{name}/features/{index}/explanations", "get"),
        ("/api/dictionaries/{name}/random", "get"), ("/api/dictionaries/{name}/search", "get"),
        ("/api/dictionaries/{name}/infer", "post"), ("/api/dictionaries/{name}/features/{index}/steer", "post"),
        ("/api/sweeps", "get"), ("/api/sweeps/{name}", "get"),
        ("/api/decompositions/{name}", "get"), ("/api/decompositions/{name}/components/{index}", "get"),
        ("/api/decompositions/{name}/infer", "post"),
    }
    assert client.get("/api/docs").status_code == 200
    assert client.post("/api/dictionaries").status_code == 405


def test_importing_the_server_loads_neither_torch_nor_transformers():
    code = ("import sys; from lm_saes.server import create_app; create_app(); "
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
