"""Query and path parameters: each one's syntax, enforced here and published in the OpenAPI doc.

A value that does not fit is a 400 that names the parameter. The regexes are written in the subset
that Python's `re` and ECMA-262 (JSON Schema's `pattern`) read alike: no `\\d`, `\\w`, `\\Z`.
"""

from __future__ import annotations

import ipaddress
import re
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from multidict import MultiMapping

from cauditd import text
from cauditd.api.context import NetworkFilter
from cauditd.findings import Priority, parse_rfc3339_ns
from cauditd.store import FindingFilter, decode_cursor

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
MAX_REPEAT = 8  # values of one repeatable filter (rule, tag, container, source)
UNIT_NS = {"ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9, "d": 86400 * 10**9,
           "w": 7 * 86400 * 10**9}
FINDING_PARAMS = ("since", "until", "min_priority", "rule", "tag", "container", "source",
                  "limit", "cursor")
NETWORK_PARAMS = ("container", "since", "peer", "port", "name", "limit")


def bad_parameter(name: str, detail: str) -> web.HTTPBadRequest:
    """A 400 with the JSON error body naming the parameter."""
    body = {"error": f"bad parameter {name!r}", "detail": detail, "parameter": name}
    return web.HTTPBadRequest(text=text.json_dumps(body), content_type="application/json")


@dataclass(frozen=True, slots=True)
class Syntax:
    """A string parameter: one regex (whole value) the parser enforces and the document shows."""

    regex: str
    expected: str  # the 400's detail

    def check(self, name: str, text: str) -> str:
        if re.fullmatch(self.regex, text) is None:
            raise bad_parameter(name, self.expected)
        return text

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "pattern": f"^(?:{self.regex})$"}


@dataclass(frozen=True, slots=True)
class IntRange:
    """An integer parameter from `low` to `high`, in plain decimal digits."""

    low: int
    high: int

    def check(self, name: str, text: str) -> int:
        digits = len(str(self.high))
        if re.fullmatch(f"[0-9]{{1,{digits}}}", text) is None or \
                not self.low <= int(text) <= self.high:
            raise bad_parameter(name, f"expected an integer from {self.low} to {self.high}")
        return int(text)

    def schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "integer", "minimum": self.low, "maximum": self.high}
        if self.high > 2**31 - 1:
            schema["format"] = "int64"
        return schema


@dataclass(frozen=True, slots=True)
class Choice:
    """A parameter with a fixed set of spellings."""

    values: tuple[str, ...]

    def check(self, name: str, text: str) -> str:
        if text not in self.values:
            raise bad_parameter(name, f"expected one of: {', '.join(self.values)}")
        return text

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "enum": list(self.values)}


# --- since / until: RFC 3339 (calendar-checked; offset optional, UTC without) or an age ---
_YEAR = "(?:000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})"
_MONTH_DAY = ("(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])"
              "|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|02-(?:0[1-9]|1[0-9]|2[0-8]))")
_LEAP_DAY = ("(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])"
             "|(?:0[48]|[2468][048]|[13579][26])00)-02-29")
_CLOCK = "(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:[.][0-9]{1,9})?"
_OFFSET = "(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
RFC3339 = f"(?:{_YEAR}-{_MONTH_DAY}|{_LEAP_DAY})[Tt ]{_CLOCK}{_OFFSET}?"
AGE = "([0-9]{1,9})(ms|s|m|h|d|w)"
TIME = Syntax(f"{AGE}|{RFC3339}",
              "expected RFC 3339 (2024-05-01T12:00:00Z) or an age like 15m, 2h, 7d")

# --- free text: rule names, tags, sink names (no control characters, no line separators) ---
_PRINTABLE = "[^\\x00-\\x1f\\x7f-\\x9f\\u2028\\u2029]"
RULE = Syntax(f"{_PRINTABLE}{{1,256}}", "expected 1 to 256 characters, no control characters")
TAG = Syntax(f"{_PRINTABLE}{{1,64}}", "expected 1 to 64 characters, no control characters")
SINK = Syntax(f"{_PRINTABLE}{{1,128}}", "expected 1 to 128 characters, no control characters")

# --- identifiers ---
CONTAINER = Syntax("[0-9a-f]{64}|[0-9a-f]{12}|host|[A-Za-z0-9][A-Za-z0-9_.-]{0,252}",
                   "expected a 64-hex container id, a 12-hex short id, a container name "
                   "([A-Za-z0-9][A-Za-z0-9_.-]*, up to 253) or host")
SOURCE = Syntax("[A-Za-z0-9_.-]{1,64}", "expected an event source such as syscall or network")
DNS_NAME = Syntax("[A-Za-z0-9_.-]{1,253}", "expected a DNS name (letters, digits, _ . -)")

# --- peer: an IPv4 or IPv6 address, optionally with a prefix length ---
_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_IPV4 = f"{_OCTET}(?:[.]{_OCTET}){{3}}"
_H = "[0-9A-Fa-f]{1,4}"
_IPV6 = "|".join((
    f"(?:{_H}:){{7}}{_H}", f"(?:{_H}:){{1,7}}:", f"(?:{_H}:){{1,6}}:{_H}",
    f"(?:{_H}:){{1,5}}(?::{_H}){{1,2}}", f"(?:{_H}:){{1,4}}(?::{_H}){{1,3}}",
    f"(?:{_H}:){{1,3}}(?::{_H}){{1,4}}", f"(?:{_H}:){{1,2}}(?::{_H}){{1,5}}",
    f"{_H}:(?::{_H}){{1,6}}", f":(?:(?::{_H}){{1,7}}|:)",
))
_PREFIX4 = "/(?:3[0-2]|[12]?[0-9])"
_PREFIX6 = "/(?:12[0-8]|1[01][0-9]|[1-9]?[0-9])"
PEER = Syntax(f"{_IPV4}(?:{_PREFIX4})?|(?:{_IPV6})(?:{_PREFIX6})?",
              "expected an IP address or a CIDR network (10.0.0.5, 10.0.0.0/8, fd00::/8)")

# --- cursor: exactly what store.encode_cursor makes, base64url("f1:" + 1 to 18 digits) ---
# Three digits (0x30-0x39) encode as [MNO][DTjz][AEIMQUYcgk][w-z0-5]; O only before D or T.
_TRIPLE = "(?:[MN][DTjz]|O[DT])[AEIMQUYcgk][w-z0-5]"
_ONE = "(?:[MN][AQgw]|O[AQ])"
_TWO = "(?:[MN][DTjz]|O[DT])[AEIMQUYcgk]"
CURSOR = Syntax(f"ZjE6(?:(?:{_TRIPLE}){{1,6}}|(?:{_TRIPLE}){{0,5}}(?:{_ONE}|{_TWO}))",
                "expected the next_cursor of a previous page")

# Falco's levels as its rules (lower case), its alerts (Capitalized) or shouting spell them.
PRIORITY = Choice((*(spelling for p in Priority for spelling in (p.name.lower(), p.label, p.name)),
                   "info", "Info", "INFO"))
LIMIT = IntRange(1, MAX_LIMIT)
PORT = IntRange(1, 65535)
FINDING_ID = IntRange(1, INT64_MAX)
EVENT_ID = IntRange(0, INT64_MAX)


def parse_time(name: str, text: str, now_ns: int | None = None) -> int:
    """RFC 3339 or an age (15m, 2h, 7d) before now; ns since the epoch, clamped to 64 bits."""
    TIME.check(name, text)
    match = re.fullmatch(AGE, text)
    if match:
        now = time.time_ns() if now_ns is None else now_ns
        when = now - int(match.group(1)) * UNIT_NS[match.group(2)]
    else:
        when = parse_rfc3339_ns(text)
    return min(max(when, INT64_MIN), INT64_MAX)


def _reject_unknown(query: MultiMapping[str], known: tuple[str, ...]) -> None:
    for key in query:
        if key not in known:
            raise bad_parameter(key, f"unknown parameter (known: {', '.join(known)})")


def _single(query: MultiMapping[str], name: str) -> str | None:
    values = query.getall(name, [])
    if len(values) > 1:
        raise bad_parameter(name, "given more than once")
    return values[0] if values else None


def _repeated(query: MultiMapping[str], name: str, syntax: Syntax) -> tuple[str, ...]:
    values = query.getall(name, [])
    if len(values) > MAX_REPEAT:
        raise bad_parameter(name, f"given more than {MAX_REPEAT} times")
    return tuple(syntax.check(name, v) for v in values)


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
        filters.min_priority = Priority.parse(PRIORITY.check("min_priority", level))
    filters.rules = _repeated(query, "rule", RULE)
    filters.tags = _repeated(query, "tag", TAG)
    filters.containers = _repeated(query, "container", CONTAINER)
    filters.sources = _repeated(query, "source", SOURCE)
    if (limit := _single(query, "limit")) is not None:
        filters.limit = LIMIT.check("limit", limit)
    if (cursor := _single(query, "cursor")) is not None:
        try:
            filters.before_id = decode_cursor(CURSOR.check("cursor", cursor))
        except ValueError as exc:
            raise bad_parameter("cursor", str(exc)) from None
    return filters


def network_filter(query: MultiMapping[str]) -> NetworkFilter:
    """A NetworkFilter from /v1/flows or /v1/dns parameters."""
    _reject_unknown(query, NETWORK_PARAMS)
    filters = NetworkFilter()
    if (container := _single(query, "container")) is not None:
        filters.container = CONTAINER.check("container", container)
    if (since := _single(query, "since")) is not None:
        filters.since_ns = parse_time("since", since)
    if (peer := _single(query, "peer")) is not None:
        try:
            filters.peer = str(ipaddress.ip_network(PEER.check("peer", peer), strict=False))
        except ValueError:
            raise bad_parameter("peer", PEER.expected) from None
    if (port := _single(query, "port")) is not None:
        filters.port = PORT.check("port", port)
    if (name := _single(query, "name")) is not None:
        filters.name = DNS_NAME.check("name", name)
    if (limit := _single(query, "limit")) is not None:
        filters.limit = LIMIT.check("limit", limit)
    return filters


def last_event_id(request: web.Request) -> int | None:
    """The SSE resume point: the Last-Event-ID header, or the last_event_id parameter."""
    text = request.headers.get("Last-Event-ID")
    name = "Last-Event-ID"
    if text is None:
        text = _single(request.query, "last_event_id")
        name = "last_event_id"
    return None if text is None else EVENT_ID.check(name, text)
