"""Microsoft Teams: an Adaptive Card for Workflows (Power Automate) webhooks, or a MessageCard
for legacy Office 365 connectors. Both are kept under Teams' ~28 KB message size; card text is
made inert by alerts.markup (links broken in Adaptive Cards' Markdown, plain in MessageCards).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from cauditd.alerts import markup
from cauditd.alerts.message import Message, clip, iso_ms
from cauditd.findings import Priority

CARD_MAX_BYTES = 27_000  # Teams rejects messages over ~28 KB; keep a margin for the envelope
TEXT_MAX = 20_000
ADAPTIVE = "adaptive"
MESSAGECARD = "messagecard"
FORMATS = (ADAPTIVE, MESSAGECARD)
LEGACY_HOSTS = ("webhook.office.com", "outlook.office.com", "outlook.office365.com")


def style(priority: Priority) -> str:
    """The Adaptive Card container style for a priority."""
    if priority <= Priority.ERROR:
        return "attention"
    if priority == Priority.WARNING:
        return "warning"
    return "accent" if priority == Priority.NOTICE else "good"


def choose_format(option: str, url: str) -> str:
    """The card format from the sink's `format`, else from the URL (connector hosts: legacy)."""
    if option:
        if option not in FORMATS:
            raise ValueError(f"teams format {option!r} is not one of {', '.join(FORMATS)}")
        return option
    host = urlsplit(url).hostname or ""
    return MESSAGECARD if host.endswith(LEGACY_HOSTS) else ADAPTIVE


def adaptive_card(message: Message) -> dict[str, Any]:
    """A Workflows webhook body: a message with one Adaptive Card attachment."""
    return _fit(message, _adaptive)


def message_card(message: Message) -> dict[str, Any]:
    """A legacy connector body: an O365 MessageCard with the theme colour of the priority."""
    return _fit(message, _message_card)


def _fit(message: Message, build: Callable[[Message, int], dict[str, Any]]) -> dict[str, Any]:
    limit = TEXT_MAX
    while True:
        body = build(message, limit)
        size = len(json.dumps(body, ensure_ascii=False).encode())
        if size <= CARD_MAX_BYTES or limit == 0:
            return body
        limit = max(0, limit - (size - CARD_MAX_BYTES) - 64)


def _text(message: Message, limit: int, escape: Callable[[str], str] = markup.teams) -> str:
    body = "\n\n".join(f"- {line}" for line in message.summary_lines) or message.text
    return markup.fit(body or "(no output)", limit, escape)


def _adaptive(message: Message, limit: int) -> dict[str, Any]:
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "msteams": {"width": "Full"},
        "body": [
            {"type": "Container", "style": style(message.priority), "bleed": True, "items": [
                {"type": "TextBlock", "text": markup.fit(message.title, 300, markup.teams),
                 "weight": "Bolder", "size": "Medium", "wrap": True},
            ]},
            {"type": "TextBlock", "text": _text(message, limit), "wrap": True},
            {"type": "FactSet", "facts": [
                {"title": markup.teams(name), "value": markup.fit(value, 500, markup.teams)}
                for name, value in message.fields
            ]},
            {"type": "TextBlock", "text": markup.teams(f"cauditd on {message.hostname} · "
             f"{iso_ms(message.time_ns)}"), "isSubtle": True, "size": "Small", "wrap": True},
        ],
    }  # fmt: skip
    return {
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": None,
            "content": card,
        }],
    }  # fmt: skip


def _message_card(message: Message, limit: int) -> dict[str, Any]:
    return {
        "@type": "MessageCard",
        "@context": "https://schema.org/extensions",
        "summary": clip(markup.plain(message.title), 200),
        "themeColor": message.colour.lstrip("#"),
        "title": clip(markup.plain(message.title), 300),
        "sections": [{
            "activityTitle": markup.plain(f"cauditd on {message.hostname}"),
            "activitySubtitle": iso_ms(message.time_ns),
            "text": _text(message, limit, markup.plain),
            "facts": [{"name": markup.plain(name), "value": clip(markup.plain(value), 500)}
                      for name, value in message.fields],
            "markdown": False,
        }],
    }  # fmt: skip
