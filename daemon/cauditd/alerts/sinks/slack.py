"""Slack incoming webhooks: an attachment coloured by priority, holding Block Kit blocks.

Limits kept (Slack's Block Kit reference): header text 150, section text 3000, section fields
10 of 2000 each, context elements 10; message text 40,000.
"""

from __future__ import annotations

import re
from typing import Any

from cauditd.alerts import markup
from cauditd.alerts.message import ELLIPSIS, Message, clip, iso_ms

HEADER_MAX = 150
SECTION_MAX = 3000
FIELD_MAX = 2000
FIELDS_MAX = 10
_PARTIAL_ENTITY = re.compile(r"&[a-z]{0,3}$")


def escape(text: str) -> str:
    """Slack's mrkdwn control characters (&, <, >) as entities, bare mentions broken
    (alerts.markup.slack)."""
    return markup.slack(text)


def mrkdwn(text: str, limit: int) -> str:
    """Escaped text cut to `limit` characters without leaving half an entity."""
    escaped = escape(text)
    if len(escaped) <= limit:
        return escaped
    head = _PARTIAL_ENTITY.sub("", escaped[: limit - 1])
    return head.rstrip() + ELLIPSIS


def payload(message: Message) -> dict[str, Any]:
    """The webhook body: fallback `text` plus one coloured attachment of blocks."""
    blocks: list[dict[str, Any]] = [
        {"type": "header",
         "text": {"type": "plain_text", "text": clip(markup.plain(message.title), HEADER_MAX)}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _body(message)}},
    ]
    if message.fields:
        fields = [
            {"type": "mrkdwn", "text": mrkdwn(f"{name}:\n{value}", FIELD_MAX)}
            for name, value in message.fields[:FIELDS_MAX]
        ]
        blocks.append({"type": "section", "fields": fields})
    footer = f"cauditd on {message.hostname} · {iso_ms(message.time_ns)}"
    context = [{"type": "mrkdwn", "text": mrkdwn(footer, 300)}]
    blocks.append({"type": "context", "elements": context})
    return {
        "text": mrkdwn(message.title, SECTION_MAX),
        "attachments": [
            {"color": message.colour, "fallback": clip(markup.plain(message.title), 300),
             "blocks": blocks}
        ],
    }


def _body(message: Message) -> str:
    if message.is_summary:
        return mrkdwn("\n".join(f"• {line}" for line in message.summary_lines), SECTION_MAX)
    return mrkdwn(message.text or "(no output)", SECTION_MAX)
