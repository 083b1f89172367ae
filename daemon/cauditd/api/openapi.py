"""The OpenAPI 3.0 document of the API: the one description of routes, parameters and shapes.

`app.ROUTES` names its operations by the `operationId`s here; a test checks they agree.
"""

from __future__ import annotations

from typing import Any

from cauditd import __version__
from cauditd.findings import Priority

JSON = "application/json"
LEVELS = [p.name.lower() for p in Priority] + ["info"]


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


TEXT = {"type": "string", "minLength": 1, "maxLength": 256}
TIME = {"type": "string", "minLength": 1, "maxLength": 64}
TEXTS = {"type": "array", "items": TEXT}
LIMIT = {"type": "integer", "minimum": 1, "maximum": 1000}

FINDING_FILTERS = [
    _query("since", TIME, "Findings at or after: RFC 3339, or an age like 15m, 2h, 7d."),
    _query("until", TIME, "Findings at or before: RFC 3339, or an age like 15m, 2h, 7d."),
    _query("min_priority", {"type": "string", "enum": LEVELS},
           "This priority or more severe (Falco's levels)."),
    _query("rule", TEXTS, "Rule name; repeat for any of several."),
    _query("tag", TEXTS, "Tag; repeat for any of several."),
    _query("container", TEXTS, "Full 64-hex id, 12-character short id, name, or host."),
    _query("source", TEXTS, "Event source (syscall, network, ...)."),
]
NETWORK_FILTERS = [
    _query("container", TEXT, "Full id, short id or name."),
    _query("since", TIME, "RFC 3339, or an age like 15m."),
    _query("peer", {"type": "string", "minLength": 1, "maxLength": 64},
           "Peer IP address or CIDR network."),
    _query("port", {"type": "integer", "minimum": 0, "maximum": 65535}, "Peer port."),
    _query("name", TEXT, "DNS name."),
    _query("limit", LIMIT, "At most this many (default 100)."),
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

AUTH = {"401": _error("No or wrong bearer token."),
        "403": _error("The token's role is not enough.")}
BAD = {"400": _error("A bad parameter; `parameter` names it.")}
NOT_FOUND = {"404": _error("No such object.")}


def _op(op_id: str, summary: str, ok: dict[str, Any], *, params: list[dict[str, Any]] | None = None,
        errors: dict[str, Any] | None = None, auth: bool = True) -> dict[str, Any]:
    responses = {"200": ok, **BAD, **(errors or {}), "500": _error("Unexpected server error.")}
    op: dict[str, Any] = {"operationId": op_id, "summary": summary,
                          "parameters": params or [], "responses": responses}
    if auth:
        responses.update(AUTH)
    else:
        op["security"] = []
    return op


PATHS: dict[str, dict[str, Any]] = {
    "/v1/findings": {"get": _op(
        "listFindings", "Findings, newest first, one page at a time.",
        _json(_ref("FindingPage"), "A page of findings."),
        params=[*FINDING_FILTERS, _query("limit", LIMIT, "Page size (default 100)."),
                _query("cursor", {"type": "string", "minLength": 1, "maxLength": 64},
                       "`next_cursor` of the previous page.")],
    )},
    "/v1/findings/stream": {"get": _op(
        "streamFindings", "Server-Sent Events of new findings (id: = finding id).",
        {"description": "An event stream.", "content": {"text/event-stream": {
            "schema": {"type": "string"}}}},
        params=[*FINDING_FILTERS,
                _query("last_event_id", {"type": "integer", "minimum": 0},
                       "Resume after this id (the Last-Event-ID header wins)."),
                {"name": "Last-Event-ID", "in": "header", "required": False,
                 "schema": {"type": "integer", "minimum": 0},
                 "description": "Resume after this finding id."}],
    )},
    "/v1/findings/{id}": {"get": _op(
        "getFinding", "One finding.", _json(_ref("Finding"), "The finding."),
        params=[_path("id", {"type": "integer", "minimum": 1}, "Finding id.")],
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
        errors={"422": _error("The new set was refused; `errors` lists why.")},
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
        params=[_path("id", TEXT, "Full id, short id or name.")], errors=NOT_FOUND,
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
        params=[_path("sink", TEXT, "Sink name.")], errors=NOT_FOUND,
    )},
    "/v1/flows": {"get": _op(
        "listFlows", "Network flows of containers.", _json(_list_of("flows", ANY_OBJECT), "Flows."),
        params=NETWORK_FILTERS,
    )},
    "/v1/dns": {"get": _op(
        "listDns", "DNS queries and answers of containers.",
        _json(_list_of("dns", ANY_OBJECT), "DNS records."), params=NETWORK_FILTERS,
    )},
    "/healthz": {"get": _op("healthz", "Alive.", _json(_ref("Status"), "Alive."), auth=False)},
    "/readyz": {"get": _op(
        "readyz", "Ready: the probes are attached.", _json(_ref("Status"), "Ready."),
        errors={"503": _error("Not ready yet.")}, auth=False,
    )},
    "/metrics": {"get": _op(
        "metrics", "Prometheus metrics (text format 0.0.4).",
        {"description": "Prometheus exposition.", "content": {"text/plain": {
            "schema": {"type": "string"}}}},
    )},
    "/openapi.json": {"get": _op(
        "openapi", "This document.", _json(ANY_OBJECT, "OpenAPI 3.0."), auth=False,
    )},
}


def document() -> dict[str, Any]:
    """The whole OpenAPI document."""
    return {
        "openapi": "3.0.3",
        "info": {"title": "cauditd API", "version": __version__,
                 "description": "Findings, rules, containers, flows and alerts of cauditd."},
        "paths": PATHS,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}, {}],
    }


def operations() -> dict[tuple[str, str], str]:
    """(METHOD, path) -> operationId, for checking the route table against the document."""
    return {(method.upper(), path): op["operationId"]
            for path, item in PATHS.items() for method, op in item.items()}
