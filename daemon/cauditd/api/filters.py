"""Query-string parsing: each parameter checked, a bad value is a 400 that names it."""

from __future__ import annotations

import ipaddress
import json
import re
import time

from aiohttp import web
from multidict import MultiMapping

from cauditd.api.context import NetworkFilter
from cauditd.findings import Priority, parse_rfc3339_ns
from cauditd.store import FindingFilter, decode_cursor

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
MAX_TEXT = 256
RELATIVE = re.compile(r"^(\d{1,9})(ms|s|m|h|d|w)$")
UNIT_NS = {"ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9, "d": 86400 * 10**9,
           "w": 7 * 86400 * 10**9}
FINDING_PARAMS = ("since", "until", "min_priority", "rule", "tag", "container", "source",
                  "limit", "cursor")
NETWORK_PARAMS = ("container", "since", "peer", "port", "name", "limit")


def bad_parameter(name: str, detail: str) -> web.HTTPBadRequest:
    """A 400 with the JSON error body naming the parameter."""
    body = {"error": f"bad parameter {name!r}", "detail": detail, "parameter": name}
    return web.HTTPBadRequest(text=json.dumps(body), content_type="application/json")


def parse_time(name: str, text: str, now_ns: int | None = None) -> int:
    """RFC 3339 or a relative age (15m, 2h, 7d) before now; ns since the epoch."""
    text = text.strip()
    match = RELATIVE.match(text)
    if match:
        now = time.time_ns() if now_ns is None else now_ns
        return now - int(match.group(1)) * UNIT_NS[match.group(2)]
    if not re.match(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}", text):
        raise bad_parameter(
            name, "expected RFC 3339 (2024-05-01T12:00:00Z) or an age like 15m, 2h, 7d"
        )
    try:
        return parse_rfc3339_ns(text)
    except (ValueError, OverflowError, OSError) as exc:
        raise bad_parameter(name, f"not a valid RFC 3339 time: {exc}") from None


def parse_int(name: str, text: str, low: int, high: int) -> int:
    """An integer in [low, high]."""
    if not re.fullmatch(r"\d{1,10}", text.strip()):
        raise bad_parameter(name, f"expected an integer from {low} to {high}")
    value = int(text)
    if not low <= value <= high:
        raise bad_parameter(name, f"expected an integer from {low} to {high}")
    return value


def parse_text(name: str, text: str) -> str:
    """A non-empty printable value of bounded length (rule names, tags, container names)."""
    if not text or len(text) > MAX_TEXT or not text.isprintable():
        raise bad_parameter(name, f"expected 1 to {MAX_TEXT} printable characters")
    return text


def _reject_unknown(query: MultiMapping[str], known: tuple[str, ...]) -> None:
    for key in query:
        if key not in known:
            raise bad_parameter(key, f"unknown parameter (known: {', '.join(known)})")


def _single(query: MultiMapping[str], name: str) -> str | None:
    values = query.getall(name, [])
    if len(values) > 1:
        raise bad_parameter(name, "given more than once")
    return values[0] if values else None


def finding_filter(query: MultiMapping[str], *, paged: bool = True) -> FindingFilter:
    """A FindingFilter from /v1/findings (or /stream, without limit and cursor) parameters."""
    known = FINDING_PARAMS if paged else (*FINDING_PARAMS[:7], "last_event_id")
    _reject_unknown(query, known)
    filters = FindingFilter()
    now = time.time_ns()
    if (since := _single(query, "since")) is not None:
        filters.since_ns = parse_time("since", since, now)
    if (until := _single(query, "until")) is not None:
        filters.until_ns = parse_time("until", until, now)
    if (level := _single(query, "min_priority")) is not None:
        try:
            filters.min_priority = Priority.parse(level)
        except ValueError as exc:
            raise bad_parameter("min_priority", str(exc)) from None
    filters.rules = tuple(parse_text("rule", v) for v in query.getall("rule", []))
    filters.tags = tuple(parse_text("tag", v) for v in query.getall("tag", []))
    filters.containers = tuple(parse_text("container", v) for v in query.getall("container", []))
    filters.sources = tuple(parse_text("source", v) for v in query.getall("source", []))
    if (limit := _single(query, "limit")) is not None:
        filters.limit = parse_int("limit", limit, 1, MAX_LIMIT)
    if (cursor := _single(query, "cursor")) is not None:
        try:
            filters.before_id = decode_cursor(cursor)
        except ValueError as exc:
            raise bad_parameter("cursor", str(exc)) from None
    return filters


def network_filter(query: MultiMapping[str]) -> NetworkFilter:
    """A NetworkFilter from /v1/flows or /v1/dns parameters."""
    _reject_unknown(query, NETWORK_PARAMS)
    filters = NetworkFilter()
    if (container := _single(query, "container")) is not None:
        filters.container = parse_text("container", container)
    if (since := _single(query, "since")) is not None:
        filters.since_ns = parse_time("since", since)
    if (peer := _single(query, "peer")) is not None:
        try:
            filters.peer = str(ipaddress.ip_network(peer.strip(), strict=False))
        except ValueError:
            raise bad_parameter("peer", "expected an IP address or a CIDR network") from None
    if (port := _single(query, "port")) is not None:
        filters.port = parse_int("port", port, 0, 65535)
    if (name := _single(query, "name")) is not None:
        filters.name = parse_text("name", name)
    if (limit := _single(query, "limit")) is not None:
        filters.limit = parse_int("limit", limit, 1, MAX_LIMIT)
    return filters


def last_event_id(request: web.Request) -> int | None:
    """The SSE resume point: the Last-Event-ID header, or the last_event_id parameter."""
    text = request.headers.get("Last-Event-ID")
    name = "Last-Event-ID"
    if text is None:
        text = _single(request.query, "last_event_id")
        name = "last_event_id"
    if text is None or text == "":
        return None
    return parse_int(name, text, 0, 10**15)
