"""Parameter syntax: the parsers accept exactly what the OpenAPI document allows, and no more."""

from __future__ import annotations

import re
import re._parser as sre_parse  # getwidth(): the longest string a regex matches
from typing import Any

import jsonschema_rs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import MultiDict

from cauditd.api import ROUTES, filters
from cauditd.api import openapi as openapi_doc
from cauditd.api.app import MAX_REQUEST_LINE
from cauditd.store import decode_cursor, encode_cursor
from tests.api.conftest import Api

SYNTAXES = {name: value for name, value in vars(filters).items()
            if isinstance(value, filters.Syntax)}
NO_SURROGATES = st.characters(codec="utf-8")
PROPERTY = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def matching(syntax: filters.Syntax) -> st.SearchStrategy[str]:
    return st.from_regex(re.compile(syntax.regex), fullmatch=True, alphabet=NO_SURROGATES)


@pytest.mark.parametrize("name", sorted(SYNTAXES))
@PROPERTY
@given(data=st.data())
def test_python_and_json_schema_read_each_pattern_alike(name: str, data: st.DataObject) -> None:
    """The server's `re.fullmatch` and the document's ECMA-262 `pattern` agree on any value."""
    syntax = SYNTAXES[name]
    value = data.draw(st.one_of(matching(syntax), st.text(NO_SURROGATES, max_size=40)))
    validator = jsonschema_rs.Draft4Validator(syntax.schema())
    assert (re.fullmatch(syntax.regex, value) is not None) == validator.is_valid(value)


@PROPERTY
@given(text=matching(filters.TIME))
def test_every_documented_time_parses_into_64_bits(text: str) -> None:
    assert filters.INT64_MIN <= filters.parse_time("since", text) <= filters.INT64_MAX


@PROPERTY
@given(text=matching(filters.PEER))
def test_every_documented_peer_is_an_ip_network(text: str) -> None:
    assert filters.network_filter(MultiDict(peer=text)).peer


@PROPERTY
@given(text=matching(filters.CURSOR))
def test_every_documented_cursor_decodes(text: str) -> None:
    assert 0 <= decode_cursor(text) < 10**18


@PROPERTY
@given(before_id=st.integers(0, 10**18 - 1))
def test_every_cursor_the_store_makes_is_documented(before_id: int) -> None:
    assert re.fullmatch(filters.CURSOR.regex, encode_cursor(before_id))


@pytest.mark.parametrize("level", filters.PRIORITY.values)
def test_every_documented_priority_parses(level: str) -> None:
    assert filters.finding_filter(MultiDict(min_priority=level)).min_priority is not None


def test_document_states_the_role_each_route_needs() -> None:
    assert openapi_doc.operations() == {(r.method, r.path): r.role for r in ROUTES}


def _longest(schema: dict[str, Any]) -> int:
    """Bytes of the longest value a schema allows, percent-encoded (12 per 4-byte character)."""
    if schema.get("type") == "array":
        return int(schema["maxItems"]) * _longest(schema["items"])
    if "enum" in schema:
        return 3 * max(len(v) for v in schema["enum"])
    if schema.get("type") == "integer":
        return len(str(schema["maximum"]))
    per_char = 12 if "[^" in schema["pattern"] else 3
    return per_char * int(sre_parse.parse(schema["pattern"]).getwidth()[1])


@pytest.mark.parametrize("path", sorted(openapi_doc.PATHS))
def test_largest_documented_request_fits_the_request_line(path: str) -> None:
    for op in openapi_doc.PATHS[path].values():
        query = [p for p in op["parameters"] if p["in"] == "query"]
        worst = sum((len(p["name"]) + 2) * int(p["schema"].get("maxItems", 1))
                    + _longest(p["schema"]) for p in query)
        path_params = sum(_longest(p["schema"]) for p in op["parameters"] if p["in"] == "path")
        assert len(f"POST {path}? HTTP/1.1") + path_params + worst < MAX_REQUEST_LINE


async def test_a_large_valid_request_is_served_and_an_oversized_one_is_plain_400(api: Api) -> None:
    wide = "\U0001f600" * 256  # 3072 bytes once percent-encoded
    params = [("rule", wide)] * 8 + [("tag", wide[:64])] * 8 + [("container", "c" * 253)] * 8
    status, body = await api.get("/v1/findings", params)
    assert status == 200 and body["findings"] == []
    async with api.session.get(api.url + "/v1/findings",
                               params={"rule": "x" * MAX_REQUEST_LINE}) as resp:
        assert resp.status == 400 and resp.content_type == "text/plain"


@pytest.mark.parametrize(("path", "params", "status"), [
    # found as 500s: times past 64-bit nanoseconds, a non-ASCII digit in an id
    ("/v1/findings", {"since": "999999999w"}, 200),
    ("/v1/findings", {"since": "9999-12-31T23:59:59Z"}, 200),
    ("/v1/findings", {"until": "0001-01-01T00:00:00+23:59"}, 200),
    ("/v1/flows", {"since": "9999-12-31T23:59:59.999999999-23:59"}, 200),
    ("/v1/findings/\u00b2", {}, 400),
    # the calendar, not just the shape
    ("/v1/findings", {"since": "2024-02-29T00:00:00Z"}, 200),
    ("/v1/findings", {"since": "2023-02-29T00:00:00Z"}, 400),
    ("/v1/findings", {"since": "2024-04-31T00:00:00Z"}, 400),
    ("/v1/findings", {"since": "2024-05-01 12:00:00.5"}, 200),
    ("/v1/findings", {"since": "2024-05-01T12:00:00.1234567890Z"}, 400),
    # priorities as Falco spells them, nothing looser
    ("/v1/findings", {"min_priority": "Warning"}, 200),
    ("/v1/findings", {"min_priority": "INFO"}, 200),
    ("/v1/findings", {"min_priority": "wArNiNg"}, 400),
    ("/v1/findings", {"min_priority": " warning"}, 400),
    ("/v1/findings", {"limit": " 5"}, 400),
    ("/v1/findings", {"rule": ["r"] * 9}, 400),
    ("/v1/findings", {"container": "web/1"}, 400),
    ("/v1/findings", {"cursor": "ZjE6MR"}, 400),  # decodes like ZjE6MQ, but the store never made it
    ("/v1/flows", {"port": "0"}, 400),
    ("/v1/flows", {"peer": "fd00::/8"}, 200),
    ("/v1/flows", {"peer": "010.0.0.1"}, 400),
    ("/v1/dns", {"name": "exa mple.com"}, 400),
    ("/v1/findings/stream", {"last_event_id": ""}, 400),
    ("/v1/containers/web\u0085", {}, 400),
])
async def test_parameter_edges(api: Api, path: str, params: dict[str, Any], status: int) -> None:
    query = [(k, v) for k, vs in params.items() for v in (vs if isinstance(vs, list) else [vs])]
    got, body = await api.get(path, query)
    assert got == status, body
    if status == 400:
        assert body["parameter"] in {*params, "id"}


async def test_metrics_content_type_is_the_documented_one(api: Api) -> None:
    documented = openapi_doc.PATHS["/metrics"]["get"]["responses"]["200"]["content"]
    async with api.session.get(api.url + "/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == f"{next(iter(documented))}; charset=utf-8"


async def test_served_document_has_auth_only_with_tokens(api: Api, make_api: Any) -> None:
    _, open_doc = await api.get("/openapi.json")
    assert open_doc["security"] == []
    assert "401" not in open_doc["paths"]["/v1/rules"]["get"]["responses"]
    secured = await make_api(tokens=True)
    _, doc = await secured.get("/openapi.json")
    assert doc["security"] == [{"bearer": []}]
    reload = doc["paths"]["/v1/rules/reload"]["post"]["responses"]
    assert {"401", "403", "422"} <= set(reload)
    assert "403" not in doc["paths"]["/v1/rules"]["get"]["responses"]
