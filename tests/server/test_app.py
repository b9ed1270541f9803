"""The app as a whole: the UI with its single-page fallback, OpenAPI, read-only routes, light import."""

from __future__ import annotations

import subprocess
import sys

from fastapi.testclient import TestClient

from lm_saes.server import create_app
from lm_saes.server.static import BUILD_COMMAND


def test_the_ui_is_served_with_a_single_page_fallback(client):
    index = client.get("/")
    assert index.status_code == 200 and "id=root" in index.text
    asset = client.get("/assets/app.js")
    assert asset.status_code == 200 and asset.text == "console.log('ui')"
    for route in ("/dictionaries/tiny-sae/features/7", "/dictionaries", "/assets/missing.js"):
        response = client.get(route)
        assert response.status_code == 200 and "id=root" in response.text, route
    assert client.get("/../../etc/passwd").text == index.text  # never outside the build
    for route in ("/api", "/api/nothing", "/api/dictionaries/tiny-sae/nothing"):
        response = client.get(route)
        assert response.status_code == 404 and "detail" in response.json(), route


def test_names_the_filesystem_refuses_get_the_ui(client):
    index = client.get("/").text
    for route in ("/" + "a" * 10_000, "/a%00b", "/assets/%00", "/" + "/".join(["d"] * 3000)):
        response = client.get(route)  # too long for a file name, or a NUL: not a 500
        assert response.status_code == 200 and response.text == index, route[:40]


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
        ("/api/dictionaries/{name}/infer", "post"), ("/api/sweeps", "get"), ("/api/sweeps/{name}", "get"),
    }
    assert client.get("/api/docs").status_code == 200
    assert client.post("/api/dictionaries").status_code == 405


def test_importing_the_server_loads_neither_torch_nor_transformers():
    code = ("import sys; from lm_saes.server import create_app; create_app(); "
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
