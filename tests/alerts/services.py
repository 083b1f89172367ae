"""A real local aiohttp server that plays the chat services and checks payloads as they document.

Each path is one service: /slack, /mattermost, /rocketchat, /discord, /teams (Adaptive Card via
Workflows), /teams-legacy (MessageCard), /googlechat, /webhook (Falco's HTTP output shape).
A payload the service would reject gets the service's 400 and lands in `invalid`. `faults`
scripts the next answers (500s, 429 with Retry-After, hangs) whatever the path.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from aiohttp import web

from cauditd.findings import Priority, parse_rfc3339_ns

HEX_COLOUR = re.compile(r"^#?[0-9a-fA-F]{6}$")
TEAMS_MAX_BYTES = 28 * 1024


class Invalid(Exception):
    """The payload breaks a documented rule of the service."""


def check(condition: bool, what: str) -> None:
    if not condition:
        raise Invalid(what)


def text_of(obj: Any, limit: int, what: str) -> str:
    check(isinstance(obj, str), f"{what} must be a string")
    check(len(obj) <= limit, f"{what} is {len(obj)} characters, over {limit}")
    return str(obj)


# -- Slack (Block Kit) ----------------------------------------------------------------------


def validate_slack(body: dict[str, Any]) -> None:
    check(any(k in body for k in ("text", "blocks", "attachments")), "no text/blocks/attachments")
    if "text" in body:
        text_of(body["text"], 40_000, "text")
    for attachment in body.get("attachments", []):
        check(bool(HEX_COLOUR.match(attachment.get("color", ""))), "attachment color not hex")
        validate_blocks(attachment.get("blocks", []))
    validate_blocks(body.get("blocks", []))


def validate_blocks(blocks: list[dict[str, Any]]) -> None:
    check(len(blocks) <= 50, "more than 50 blocks")
    for block in blocks:
        kind = block.get("type")
        if kind == "header":
            check(block["text"]["type"] == "plain_text", "header text must be plain_text")
            text_of(block["text"]["text"], 150, "header text")
        elif kind == "section":
            check("text" in block or "fields" in block, "section needs text or fields")
            if "text" in block:
                check(block["text"]["type"] in ("mrkdwn", "plain_text"), "section text type")
                check(len(block["text"]["text"]) >= 1, "empty section text")
                text_of(block["text"]["text"], 3000, "section text")
            fields = block.get("fields", [])
            check(len(fields) <= 10, "more than 10 section fields")
            for item in fields:
                text_of(item["text"], 2000, "section field")
        elif kind == "context":
            check(1 <= len(block["elements"]) <= 10, "context needs 1-10 elements")
            for element in block["elements"]:
                text_of(element["text"], 3000, "context element")
        else:
            check(kind == "divider", f"unknown block type {kind!r}")


# -- Mattermost and Rocket.Chat (legacy attachments) -----------------------------------------


def validate_attachments(body: dict[str, Any]) -> None:
    text_of(body.get("text", ""), 5000, "text")
    for attachment in body.get("attachments", []):
        check(bool(HEX_COLOUR.match(attachment.get("color", ""))), "attachment color not hex")
        text_of(attachment.get("title", ""), 5000, "attachment title")
        text_of(attachment.get("text", ""), 5000, "attachment text")
        for item in attachment.get("fields", []):
            check(isinstance(item.get("short"), bool), "field short must be a boolean")
            text_of(item["title"], 5000, "field title")
            text_of(item["value"], 5000, "field value")


# -- Discord (embeds) -------------------------------------------------------------------------


def validate_discord(body: dict[str, Any]) -> None:
    check(bool(body.get("content") or body.get("embeds")), "needs content or embeds")
    text_of(body.get("content", ""), 2000, "content")
    embeds = body.get("embeds", [])
    check(len(embeds) <= 10, "more than 10 embeds")
    total = 0
    for embed in embeds:
        total += len(text_of(embed.get("title", ""), 256, "embed title"))
        total += len(text_of(embed.get("description", ""), 4096, "embed description"))
        check(0 <= embed.get("color", 0) <= 0xFFFFFF, "embed color out of range")
        fields = embed.get("fields", [])
        check(len(fields) <= 25, "more than 25 fields")
        for item in fields:
            check(len(item["name"]) >= 1 and len(item["value"]) >= 1, "empty field name/value")
            total += len(text_of(item["name"], 256, "field name"))
            total += len(text_of(item["value"], 1024, "field value"))
        if "footer" in embed:
            total += len(text_of(embed["footer"]["text"], 2048, "footer text"))
        if "timestamp" in embed:
            datetime.fromisoformat(embed["timestamp"].replace("Z", "+00:00"))
    check(total <= 6000, f"embeds hold {total} characters, over 6000")


# -- Microsoft Teams ------------------------------------------------------------------------

CARD_ELEMENTS = {"TextBlock", "FactSet", "Container", "ColumnSet", "Image", "RichTextBlock"}
CONTAINER_STYLES = {"default", "emphasis", "good", "attention", "warning", "accent"}


def validate_adaptive(body: dict[str, Any], raw: bytes) -> None:
    check(len(raw) <= TEAMS_MAX_BYTES, f"message is {len(raw)} bytes, over 28 KB")
    check(body.get("type") == "message", 'type must be "message"')
    attachments = body.get("attachments") or []
    check(len(attachments) >= 1, "no attachments")
    for attachment in attachments:
        check(
            attachment.get("contentType") == "application/vnd.microsoft.card.adaptive",
            "contentType must be application/vnd.microsoft.card.adaptive",
        )
        card = attachment["content"]
        check(card.get("type") == "AdaptiveCard", "content.type must be AdaptiveCard")
        check(bool(re.match(r"^\d+\.\d+$", card.get("version", ""))), "card version like 1.4")
        validate_elements(card.get("body", []))


def validate_elements(elements: list[dict[str, Any]]) -> None:
    for element in elements:
        kind = element.get("type")
        check(kind in CARD_ELEMENTS, f"unknown card element {kind!r}")
        if kind == "TextBlock":
            check(isinstance(element.get("text"), str), "TextBlock needs text")
        elif kind == "FactSet":
            for fact in element["facts"]:
                check(isinstance(fact["title"], str) and isinstance(fact["value"], str), "fact")
        elif kind == "Container":
            check(element.get("style", "default") in CONTAINER_STYLES, "container style")
            validate_elements(element["items"])


def validate_messagecard(body: dict[str, Any], raw: bytes) -> None:
    check(len(raw) <= TEAMS_MAX_BYTES, f"message is {len(raw)} bytes, over 28 KB")
    check(body.get("@type") == "MessageCard", "@type must be MessageCard")
    check("@context" in body, "@context missing")
    check(bool(body.get("summary") or body.get("text")), "summary or text required")
    check(bool(HEX_COLOUR.match(body.get("themeColor", ""))), "themeColor not hex")
    for section in body.get("sections", []):
        for fact in section.get("facts", []):
            check(isinstance(fact["name"], str) and isinstance(fact["value"], str), "fact")


# -- Google Chat and the generic webhook ------------------------------------------------------


def validate_googlechat(body: dict[str, Any]) -> None:
    check("text" in body or "cardsV2" in body, "needs text or cardsV2")
    text_of(body.get("text", ""), 4096, "text")


def validate_falco(body: dict[str, Any]) -> None:
    for key in ("output", "priority", "rule", "time", "output_fields"):
        check(key in body, f"Falco payload without {key}")
    Priority.parse(body["priority"])
    parse_rfc3339_ns(body["time"])
    check(isinstance(body["output_fields"], dict), "output_fields must be an object")


Validator = Callable[[dict[str, Any], bytes], None]
SERVICES: dict[str, tuple[Validator, int]] = {
    "slack": (lambda b, r: validate_slack(b), 200),
    "mattermost": (lambda b, r: validate_attachments(b), 200),
    "rocketchat": (lambda b, r: validate_attachments(b), 200),
    "discord": (lambda b, r: validate_discord(b), 204),
    "teams": (validate_adaptive, 202),
    "teams-legacy": (validate_messagecard, 200),
    "googlechat": (lambda b, r: validate_googlechat(b), 200),
    "webhook": (lambda b, r: validate_falco(b), 200),
}


# -- the server -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fault:
    """One scripted answer: a status (with Retry-After), or a hang after accepting the body."""

    status: int = 500
    retry_after: str | None = None
    retry_after_date_s: float | None = None
    hang_s: float = 0.0


@dataclass
class Received:
    """A message the service accepted (processed), with the headers a receiver de-duplicates on."""

    service: str
    key: str
    delivery: str
    body: dict[str, Any]


@dataclass
class ChatServices:
    """The fake services on 127.0.0.1; start/stop keep the port, so a stop refuses connections."""

    faults: deque[Fault] = field(default_factory=deque)
    default_status: int = 0  # non-zero: answer this to everything once `faults` is empty
    reject: Callable[[str, dict[str, Any]], int] | None = None
    received: list[Received] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)
    attempts: list[tuple[float, str, int]] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.port}/{service}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{service}", self.handle)
        self._runner = web.AppRunner(app, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        if not self.port:
            self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def of(self, service: str) -> list[Received]:
        return [r for r in self.received if r.service == service]

    def unique(self, service: str) -> list[Received]:
        """What a receiver de-duplicating by Idempotency-Key processes, first arrival first."""
        seen: set[str] = set()
        kept = []
        for item in self.of(service):
            if item.key not in seen:
                seen.add(item.key)
                kept.append(item)
        return kept

    async def handle(self, request: web.Request) -> web.StreamResponse:
        service = request.match_info["service"]
        raw = await request.read()
        if service not in SERVICES:
            return self._answer(service, 404, "no_service")
        if self.faults:
            return await self._fault(service, raw, request, self.faults.popleft())
        if self.default_status:
            return self._answer(service, self.default_status, "down")
        return self._accept(service, raw, request)

    async def _fault(
        self, service: str, raw: bytes, request: web.Request, fault: Fault
    ) -> web.StreamResponse:
        if fault.hang_s:  # processed, but the answer comes too late: the sender retries
            self._accept(service, raw, request)
            await asyncio.sleep(fault.hang_s)
            return self._answer(service, 200, "late")
        headers = {}
        if fault.retry_after is not None:
            headers["Retry-After"] = fault.retry_after
        if fault.retry_after_date_s is not None:
            when = datetime.fromtimestamp(time.time() + fault.retry_after_date_s, UTC)
            headers["Retry-After"] = format_datetime(when, usegmt=True)
        return self._answer(service, fault.status, "fault", headers)

    def _accept(self, service: str, raw: bytes, request: web.Request) -> web.StreamResponse:
        validator, ok_status = SERVICES[service]
        try:
            body = json.loads(raw)
            check(isinstance(body, dict), "body must be a JSON object")
            validator(body, raw)
        except (Invalid, ValueError, KeyError, TypeError) as exc:
            self.invalid.append(f"{service}: {exc}")
            return self._answer(service, 400, f"invalid_payload: {exc}")
        status = self.reject(service, body) if self.reject else 0
        if status:
            return self._answer(service, status, "rejected")
        self.received.append(Received(
            service, request.headers.get("Idempotency-Key", ""),
            request.headers.get("X-Cauditd-Delivery", ""), body,
        ))  # fmt: skip
        return self._answer(service, ok_status, "ok")

    def _answer(
        self, service: str, status: int, text: str, headers: dict[str, str] | None = None
    ) -> web.Response:
        self.attempts.append((time.monotonic(), service, status))
        if status == 204:
            return web.Response(status=204, headers=headers)
        return web.Response(status=status, text=text, headers=headers)
