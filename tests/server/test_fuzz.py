"""Every route of the real app over the real embedded store, fuzzed with hypothesis: whatever a
client sends, the answer is never 5xx, and an error body is small and names no filesystem path or
port.

The routes and their parameters come from the app's own OpenAPI spec, so a route added later is
fuzzed without touching this file; the UI's catch-all route (not in the spec) is fuzzed apart.
Values mix the valid (stored names, in-range numbers) with the hostile: integers past 64 bits,
NaN and infinities, lone surrogates and invalid UTF-8 (percent-encoded), NUL, MongoDB operators,
10,000-character names, wrong types and unknown keys in bodies, bodies that are not JSON or not
UTF-8. Runs are derandomized (the same examples every run); LM_SAES_FUZZ_EXAMPLES=N and
LM_SAES_FUZZ_RANDOM=1 explore further.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import quote, quote_from_bytes

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import lm_saes
from lm_saes.server import create_app
from lm_saes.store import server_state
from tests.server.served import BAD_HOOK, BARE, D_SAE, NAME, SWEEP, SWEPT_MEMBER

SPEC = create_app().openapi()  # opens nothing: the store opens when the app starts
ROUTES = [(path, method) for path, ops in SPEC["paths"].items() for method in ops]
EXAMPLES = int(os.environ.get("LM_SAES_FUZZ_EXAMPLES", "150"))  # per route: ~35 s in all on 2 cores
FUZZ = settings(
    max_examples=EXAMPLES, deadline=None, database=None, derandomize=not os.environ.get("LM_SAES_FUZZ_RANDOM"),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
MAX_ERROR_BYTES = 2048  # an error body: a message, a few stored names, at most MAX_SHOWN echoed characters

STORED = {"dictionaries": [NAME, SWEPT_MEMBER, BARE, BAD_HOOK], "sweeps": [SWEEP]}  # by the route's resource
HOSTILE_WORDS = ["", " ", "$where", "$gt", "{'$ne': 1}", ".", "..", "../../etc/passwd", "a.b", "\x00", "%00",
                 "null", "default", "[]", "\\", "'\"", "<b>x</b>", "\u202e", "x" * 10_000]
INT_EDGES = [0, 1, -1, D_SAE - 1, D_SAE, 2**31, 2**53 + 1, 2**63 - 1, 2**63, -(2**63) - 1, 2**64, 10**30]
FLOAT_WORDS = ["nan", "NaN", "inf", "-inf", "Infinity", "1e999", "-0", "0x1p-2", "1_0", " 0.5", "5e-324"]

# Any code point, lone surrogates included (sent as JSON escapes, or as invalid UTF-8 in a URL).
any_text = st.text(st.characters(exclude_categories=()), max_size=40)
hostile = st.one_of(any_text, st.sampled_from(HOSTILE_WORDS))


def valid(schema: dict, name: str, resource: str) -> st.SearchStrategy:
    """Values the parameter or field of JSON schema ``schema`` accepts; a ``name`` is a stored
    record of the route's ``resource``."""
    kinds = [s.get("type") for s in schema.get("anyOf", [schema])]
    if name == "name" and resource in STORED:
        return st.sampled_from(STORED[resource])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "integer" in kinds:
        return st.integers(int(schema.get("minimum", -(2**63))), int(schema.get("maximum", 2**63 - 1)))
    if "number" in kinds:
        return st.floats(schema.get("minimum", -1e9), schema.get("maximum", 1e9))
    text = st.text(min_size=max(schema.get("minLength", 0), 1), max_size=schema.get("maxLength", 300))
    return weighted((3, st.just(schema["default"])), (1, text)) if "default" in schema else text


def hostile_value(schema: dict, in_url: bool) -> st.SearchStrategy:
    """Values a client might send instead: out-of-range and over-64-bit integers for an integer,
    NaN, infinities and odd spellings for a number, any text or type for anything; ``in_url`` adds
    raw bytes (invalid UTF-8 once percent-encoded)."""
    kinds = [s.get("type") for s in schema.get("anyOf", [schema])]
    anything = st.one_of(hostile, st.integers(), st.floats(), *([st.binary(max_size=20)] if in_url else []))
    if "integer" in kinds:
        return weighted((2, st.sampled_from(INT_EDGES)), (1, st.integers()), (1, anything))
    if "number" in kinds:
        return weighted((1, st.sampled_from(FLOAT_WORDS)), (1, st.floats()), (1, anything))
    return weighted((3, hostile), (1, anything))


@st.composite
def values(draw, fields: dict[str, dict], resource: str, *, in_url: bool, optional: set[str]) -> dict:
    """Values for some of ``fields`` (name -> schema): mostly one hostile and the others valid (so
    that the request reaches the store and the model, where the hostile one does its damage), else
    all valid or each hostile with even odds. A hostile field is always sent; an ``optional`` valid
    one half the time."""
    names = list(fields)
    mode = draw(weighted((6, st.just("one hostile")), (1, st.just("all valid")), (1, st.just("any"))))
    bad = {draw(st.sampled_from(names))} if names and mode == "one hostile" else set()
    if mode == "any":
        bad = {n for n in names if draw(st.booleans())}
    sent = [n for n in names if n in bad or n not in optional or draw(st.booleans())]
    return {n: draw(hostile_value(fields[n], in_url) if n in bad else valid(fields[n], n, resource)) for n in sent}


def weighted(*options: tuple[int, st.SearchStrategy]) -> st.SearchStrategy:
    """One of the strategies, each drawn as often as its weight says (explicit weights: one_of
    flattens nested one_ofs, so nesting would not weigh anything)."""
    return st.sampled_from([s for weight, s in options for _ in range(weight)]).flatmap(lambda s: s)


def url_part(x: object) -> str:
    """``x`` percent-encoded as a URL component: lone surrogates as their (invalid) UTF-8 bytes."""
    if isinstance(x, bytes):
        return quote_from_bytes(x, safe="")
    return quote(str(x).encode("utf-8", "surrogatepass"), safe="")


@st.composite
def requests(draw, path: str, method: str) -> dict:
    """One request to the route: path and query parameters (some left out, unknown ones added) and a body."""
    op = SPEC["paths"][path][method]
    params = op.get("parameters", [])
    resource = path.split("/")[2]  # /api/RESOURCE/...
    optional = {p["name"] for p in params if not p.get("required")}
    drawn = draw(values({p["name"]: p["schema"] for p in params}, resource, in_url=True, optional=optional))
    url, query = path, []
    for param in (p for p in params if p["name"] in drawn):
        part = url_part(drawn[param["name"]])
        if param["in"] == "path":
            url = url.replace("{" + param["name"] + "}", part)
        else:
            query.append(f"{url_part(param['name'])}={part}")
    if draw(st.integers(0, 9)) == 0:
        query.append(f"{url_part(draw(any_text))}={url_part(draw(any_text))}")
    content, headers = None, {}
    if "requestBody" in op:
        content, headers = draw(bodies(op["requestBody"], resource))
    return {"method": method.upper(), "url": url + ("?" + "&".join(query) if query else ""),
            "content": content, "headers": headers}


def schema_of(request_body: dict) -> dict:
    schema = request_body["content"]["application/json"]["schema"]
    return SPEC["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]] if "$ref" in schema else schema


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | any_text,
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(any_text, inner, max_size=3),
                           max_leaves=8)


@st.composite
def bodies(draw, request_body: dict, resource: str) -> tuple[bytes | None, dict]:
    """A body: mostly a JSON object of the schema's fields with valid or hostile values (optional
    ones sometimes left out, an unknown key sometimes added); else any JSON, no JSON, invalid UTF-8,
    nothing, under several content types."""
    schema = schema_of(request_body)
    properties = schema.get("properties", {})
    optional = set(properties) - set(schema.get("required", ()))
    fields = draw(values(properties, resource, in_url=False, optional=optional))
    if draw(st.integers(0, 9)) == 0:
        fields[draw(any_text)] = draw(json_values)
    as_json = json.dumps(fields).encode()  # ensure_ascii: lone surrogates become \\ud800 escapes
    if draw(st.sampled_from([True, True, True, False])):
        return as_json, {"content-type": "application/json"}
    content = draw(st.one_of(
        json_values.map(lambda v: json.dumps(v).encode()), st.binary(max_size=60), st.none(),
        st.binary(max_size=20).map(lambda b: b'{"text": "' + b + b'"}'), st.just(as_json.replace(b'"', b"'")),
    ))
    kind = draw(st.sampled_from(["application/json", "application/json; charset=latin-1", "text/plain", None]))
    return content, ({"content-type": kind} if kind else {})


@pytest.fixture(scope="module")
def secrets(stored, swept) -> list[str]:
    """What no error body may contain: the store's files, the model and dictionary, the package, the port."""
    port = server_state(stored.store.data_dir)["port"]
    paths = [stored.store.data_dir, stored.dictionary_dir, stored.model_dir, Path(lm_saes.__file__).parent]
    return [str(Path(p).resolve()) for p in paths] + [f"127.0.0.1:{port}", f"localhost:{port}"]


def check(response, secrets: list[str]) -> None:
    event(f"status {response.status_code}")  # --hypothesis-show-statistics: how many got how far
    request = f"{response.request.method} {str(response.request.url)[:300]}"
    assert response.status_code < 500, f"{request} -> {response.status_code}: {response.text[:500]}"
    if response.status_code >= 400:
        assert len(response.content) <= MAX_ERROR_BYTES, f"{request}: a {len(response.content):,}-byte error body"
        leaked = [s for s in secrets if s in response.text]
        assert not leaked, f"{request}: the error body names {leaked}: {response.text[:500]}"
        if response.request.url.path.startswith("/api") and response.request.method != "HEAD":
            assert "detail" in response.json(), f"{request}: {response.text[:300]}"


@pytest.mark.slow
@pytest.mark.parametrize(("path", "method"), ROUTES, ids=[f"{m.upper()} {p}" for p, m in ROUTES])
@FUZZ
@given(data=st.data())
def test_every_api_route_answers_every_request_without_a_server_error(client, secrets, path, method, data):
    check(client.request(**data.draw(requests(path, method), label="request")), secrets)


ui_paths = st.lists(st.one_of(hostile.map(url_part), st.binary(max_size=20).map(url_part),
                              st.sampled_from(["api", "assets", "index.html", "..", "%2e%2e", "%2F"])),
                    min_size=1, max_size=4).map("/".join)


@pytest.mark.slow
@FUZZ
@given(path=ui_paths, method=st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"]))
def test_any_other_path_and_method_gets_the_ui_or_a_client_error(client, secrets, path, method):
    check(client.request(method, "http://testserver/" + path), secrets)  # absolute: "//x" stays a path
