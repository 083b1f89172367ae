"""The OpenAPI 3.0 document of the API: routes, parameters, responses and shapes.

Parameter schemas come from `filters` (the parsers' own regexes and ranges); each operation's
`x-role` is the role `app.ROUTES` requires, and a test checks the two agree.
"""

from __future__ import annotations

from typing import Any

from cauditd import __version__
from cauditd.api import filters
from cauditd.findings import Priority

JSON = "application/json"
SSE = "text/event-stream"
METRICS = "text/plain; version=0.0.4"
PARSER_REFUSAL = ("The HTTP parser refused the request before routing (a request line or header "
                  "over its limit): plain text.")


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    param: dict[str, Any] = {"name": name, "in": "query", "required": False,
                             "schema": schema, "description": description}
    if schema.get("type") == "array":
        param.update(style="form", explode=True)
    return param


def _path(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema,
            "description": description}


def _repeatable(syntax: filters.Syntax) -> dict[str, Any]:
    return {"type": "array", "items": syntax.schema(), "maxItems": filters.MAX_REPEAT}


TIME_TEXT = ("RFC 3339 (2024-05-01T12:00:00Z; T, t or a space between date and time; up to 9 "
             "fraction digits; UTC without an offset), or an age before now: 500ms, 30s, 15m, 2h, "
             "7d, 1w")
FINDING_FILTERS = [
    _query("since", filters.TIME.schema(), f"Findings at or after: {TIME_TEXT}."),
    _query("until", filters.TIME.schema(), f"Findings at or before: {TIME_TEXT}."),
    _query("min_priority", filters.PRIORITY.schema(),
           "This priority or more severe (Falco's levels; info = informational)."),
    _query("rule", _repeatable(filters.RULE), "Rule name; repeat for any of several."),
    _query("tag", _repeatable(filters.TAG), "Tag; repeat for any of several."),
    _query("container", _repeatable(filters.CONTAINER),
           "Full 64-hex id, 12-hex short id, container name, or host; repeat for any of several."),
    _query("source", _repeatable(filters.SOURCE),
           "Event source (syscall, network, ...); repeat for any of several."),
]
NETWORK_FILTERS = [
    _query("container", filters.CONTAINER.schema(), "Full 64-hex id, 12-hex short id or name."),
    _query("since", filters.TIME.schema(), f"Seen at or after: {TIME_TEXT}."),
    _query("peer", filters.PEER.schema(), "Peer IP address or CIDR network."),
    _query("port", filters.PORT.schema(), "Peer port."),
    _query("name", filters.DNS_NAME.schema(), "DNS name."),
    _query("limit", filters.LIMIT.schema(), "At most this many (default 100)."),
]

ANY_OBJECT: dict[str, Any] = {"type": "object", "additionalProperties": True}


def _list_of(key: str, item: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": [key],
            "properties": {key: {"type": "array", "items": item}}}


SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object", "required": ["error", "detail"],
        "properties": {
            "error": {"type": "string"}, "detail": {"type": "string"},
            "parameter": {"type": "string"},
            "errors": {"type": "array", "items": {"type": "string"}},
        },
    },
    "Container": {
        "type": "object",
        "required": ["id", "full_id", "name", "image", "pod", "namespace"],
        "properties": {k: {"type": "string"}
                       for k in ("id", "full_id", "name", "image", "pod", "namespace")},
    },
    "Process": {
        "type": "object", "nullable": True,
        "required": ["pid", "exe", "cmdline", "parents"],
        "properties": {
            "pid": {"type": "integer"}, "exe": {"type": "string"},
            "cmdline": {"type": "string"}, "parents": {"type": "array", "items": ANY_OBJECT},
        },
    },
    "Finding": {
        "type": "object",
        "required": ["id", "time", "rule", "priority", "source", "output", "output_fields",
                     "tags", "hostname", "container", "process", "count", "first_time",
                     "last_time"],
        "properties": {
            "id": {"type": "integer", "minimum": 1},
            "time": {"type": "string", "description": "RFC 3339 with nanoseconds."},
            "rule": {"type": "string"},
            "priority": {"type": "string", "enum": [p.label for p in Priority]},
            "source": {"type": "string"},
            "output": {"type": "string"},
            "output_fields": ANY_OBJECT,
            "tags": {"type": "array", "items": {"type": "string"}},
            "hostname": {"type": "string"},
            "container": _ref("Container"),
            "process": _ref("Process"),
            "count": {"type": "integer", "minimum": 1},
            "first_time": {"type": "string"},
            "last_time": {"type": "string"},
        },
    },
    "FindingPage": {
        "type": "object", "required": ["findings", "next_cursor"],
        "properties": {
            "findings": {"type": "array", "items": _ref("Finding")},
            "next_cursor": {"type": "string", "nullable": True,
                            "description": "Pass as `cursor` for the next (older) page."},
        },
    },
    "ContainerCounts": {
        "type": "object", "required": ["full_id", "id", "name", "findings", "events", "last_time"],
        "properties": {
            "full_id": {"type": "string"}, "id": {"type": "string"}, "name": {"type": "string"},
            "findings": {"type": "integer"}, "events": {"type": "integer"},
            "last_time": {"type": "string"},
        },
    },
    "ContainerDetail": {
        "type": "object", "required": ["container", "findings", "recent_findings"],
        "properties": {
            "container": ANY_OBJECT, "findings": {"type": "integer"},
            "recent_findings": {"type": "array", "items": _ref("Finding")},
        },
    },
    "Status": {"type": "object", "required": ["status"],
               "properties": {"status": {"type": "string"}}},
}

PLAIN = {"text/plain": {"schema": {"type": "string"}}}
UNAUTHORIZED = _error("No or wrong bearer token (only when tokens are configured).")
FORBIDDEN = _error("A read token on an admin route.")
NOT_FOUND = {"404": _error("No such object.")}
SERVER_ERROR = _error("A bug, logged with its traceback; never caused by input.")
METHOD_NOT_ALLOWED = _error("Another method on a documented path; the Allow header lists the right "
                            "ones.")


def _bad_request(checks_input: bool) -> dict[str, Any]:
    if not checks_input:
        return {"description": PARSER_REFUSAL, "content": PLAIN}
    return {"description": "A bad, repeated or unknown parameter (JSON; `parameter` names it), or "
                           + PARSER_REFUSAL[0].lower() + PARSER_REFUSAL[1:],
            "content": {JSON: {"schema": _ref("Error")}, **PLAIN}}


def _op(op_id: str, summary: str, ok: dict[str, Any], *, params: list[dict[str, Any]] | None = None,
        errors: dict[str, Any] | None = None, role: str | None = "read",
        checks_input: bool = True) -> dict[str, Any]:
    """One operation; `role` is what app.ROUTES requires (None: open), and decides 401 and 403."""
    responses = {"200": ok, "400": _bad_request(checks_input), **(errors or {}),
                 "500": SERVER_ERROR}
    op: dict[str, Any] = {"operationId": op_id, "summary": summary,
                          "parameters": params or [], "responses": responses}
    if role is None:
        op["security"] = []
    else:
        responses["401"] = UNAUTHORIZED
    if role == "admin":
        responses["403"] = FORBIDDEN
    op["x-role"] = role
    return op


PATHS: dict[str, dict[str, Any]] = {
    "/v1/findings": {"get": _op(
        "listFindings", "Findings, newest first, one page at a time.",
        _json(_ref("FindingPage"), "A page of findings."),
        params=[*FINDING_FILTERS,
                _query("limit", filters.LIMIT.schema(), "Page size (default 100)."),
                _query("cursor", filters.CURSOR.schema(), "`next_cursor` of the previous page.")],
    )},
    "/v1/findings/stream": {"get": _op(
        "streamFindings", "Server-Sent Events of new findings (id: = finding id).",
        {"description": "An endless event stream: `retry:`, then `id:`/`event: finding`/`data:` "
                        "per finding, `: heartbeat` comments when idle.",
         "content": {SSE: {"schema": {"type": "string"}}}},
        params=[*FINDING_FILTERS,
                _query("last_event_id", filters.EVENT_ID.schema(),
                       "Resume after this id (the Last-Event-ID header wins)."),
                {"name": "Last-Event-ID", "in": "header", "required": False,
                 "schema": filters.EVENT_ID.schema(),
                 "description": "Resume after this finding id."}],
        errors={"503": _error("Too many streams (api.max_streams); see Retry-After.")},
    )},
    "/v1/findings/{id}": {"get": _op(
        "getFinding", "One finding.", _json(_ref("Finding"), "The finding."),
        params=[_path("id", filters.FINDING_ID.schema(), "Finding id.")],
        errors=NOT_FOUND,
    )},
    "/v1/rules": {"get": _op(
        "listRules", "Loaded rules: name, enabled, priority, tags, matches.",
        _json(_list_of("rules", ANY_OBJECT), "The rules."),
    )},
    "/v1/rules/reload": {"post": _op(
        "reloadRules", "Reload the rule files (admin).",
        _json({"type": "object", "required": ["reloaded", "errors"], "properties": {
            "reloaded": {"type": "boolean"},
            "errors": {"type": "array", "items": {"type": "string"}}}}, "Swapped in."),
        errors={"422": _error("The new set was refused; `errors` lists why.")}, role="admin",
    )},
    "/v1/containers": {"get": _op(
        "listContainers", "Tracked containers with their finding counts.",
        _json({"type": "object", "required": ["containers", "findings_by_container"],
               "properties": {"containers": {"type": "array", "items": ANY_OBJECT},
                              "findings_by_container": {"type": "array",
                                                        "items": _ref("ContainerCounts")}}},
              "Containers."),
    )},
    "/v1/containers/{id}": {"get": _op(
        "getContainer", "One container: metadata, finding count, recent findings.",
        _json(_ref("ContainerDetail"), "The container."),
        params=[_path("id", filters.CONTAINER.schema(),
                      "Full 64-hex id, 12-hex short id or name.")],
        errors=NOT_FOUND,
    )},
    "/v1/stats": {"get": _op(
        "getStats", "Events seen and lost per probe, findings per rule, uptime.",
        _json(ANY_OBJECT, "Counters."),
    )},
    "/v1/alerts": {"get": _op(
        "listAlertSinks", "Alert sinks and their delivery state.",
        _json(_list_of("sinks", ANY_OBJECT), "Sinks."),
    )},
    "/v1/alerts/{sink}/test": {"post": _op(
        "testAlertSink", "Send a test message through one sink (admin).",
        _json(ANY_OBJECT, "The delivery result."),
        params=[_path("sink", filters.SINK.schema(), "Sink name.")], errors=NOT_FOUND, role="admin",
    )},
    "/v1/flows": {"get": _op(
        "listFlows", "Network flows of containers.", _json(_list_of("flows", ANY_OBJECT), "Flows."),
        params=NETWORK_FILTERS,
    )},
    "/v1/dns": {"get": _op(
        "listDns", "DNS queries and answers of containers.",
        _json(_list_of("dns", ANY_OBJECT), "DNS records."), params=NETWORK_FILTERS,
    )},
    "/healthz": {"get": _op("healthz", "Alive.", _json(_ref("Status"), "Alive."), role=None,
                            checks_input=False)},
    "/readyz": {"get": _op(
        "readyz", "Ready: the probes are attached and findings reach the disk.",
        _json(_ref("Status"), "Ready."),
        errors={"503": _error("Not ready yet, or degraded (the state dir refuses writes: "
                              "findings held in memory, alerts still sent).")},
        role=None, checks_input=False,
    )},
    "/metrics": {"get": _op(
        "metrics", "Prometheus metrics (text format 0.0.4).",
        {"description": "Prometheus exposition (charset utf-8).",
         "content": {METRICS: {"schema": {"type": "string"}}}},
        checks_input=False,
    )},
    "/openapi.json": {"get": _op(
        "openapi", "This document.", _json(ANY_OBJECT, "OpenAPI 3.0."), role=None,
        checks_input=False,
    )},
}


def _without_auth(paths: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {path: {method: {**op, "responses": {status: response
                                                for status, response in op["responses"].items()
                                                if status not in ("401", "403")}}
                   for method, op in item.items()}
            for path, item in paths.items()}


def document(tokens: bool = True) -> dict[str, Any]:
    """The whole OpenAPI document; `tokens`: whether the server has tokens (else no auth at all)."""
    return {
        "openapi": "3.0.3",
        "info": {"title": "cauditd API", "version": __version__,
                 "description": "Findings, rules, containers, flows and alerts of cauditd. "
                                "Every error is JSON {error, detail}, except a request the HTTP "
                                "parser refuses (plain text 400). Another method on a documented "
                                "path is a 405 (MethodNotAllowed) whose Allow header lists the "
                                "right ones; an undocumented path is a 404."},
        "paths": PATHS if tokens else _without_auth(PATHS),
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {"MethodNotAllowed": METHOD_NOT_ALLOWED,
                          "NotFound": _error("No route has this path.")},
        },
        "security": [{"bearer": []}] if tokens else [],
    }


def operations() -> dict[tuple[str, str], str | None]:
    """(METHOD, path) -> the role the document says it needs, to check against app.ROUTES."""
    return {(method.upper(), path): op["x-role"]
            for path, item in PATHS.items() for method, op in item.items()}
