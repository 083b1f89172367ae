"""Discord webhooks: one embed coloured by priority, its Markdown escaped (alerts.markup) and
no mention allowed to ping.

Limits kept (Discord's embed reference): title 256, description 4096, 25 fields of name 256 and
value 1024, footer 2048, and 6000 characters over the whole embed.
"""

from __future__ import annotations

from typing import Any

from cauditd.alerts.markup import fit, markdown
from cauditd.alerts.message import Message, iso_ms

TITLE_MAX = 256
DESCRIPTION_MAX = 4096
FIELD_NAME_MAX = 256
FIELD_VALUE_MAX = 1024
FIELDS_MAX = 25
EMBED_TOTAL_MAX = 6000
FIELD_BUDGET = 2400  # characters all fields together may take, leaving the rest to the output


def payload(message: Message) -> dict[str, Any]:
    """The webhook body: no mentions, one embed."""
    fields = _fields(message.fields[:FIELDS_MAX])
    title = fit(message.title, TITLE_MAX, markdown)
    footer = fit(f"cauditd on {message.hostname}", 200, markdown)
    used = len(title) + len(footer) + sum(len(f["name"]) + len(f["value"]) for f in fields)
    body = "\n".join(f"• {line}" for line in message.summary_lines) or message.text
    room = min(DESCRIPTION_MAX, EMBED_TOTAL_MAX - used)
    embed: dict[str, Any] = {
        "title": title,
        "description": fit(body or "(no output)", room, markdown),
        "color": int(message.colour.lstrip("#"), 16),
        "fields": fields,
        "footer": {"text": footer},
        "timestamp": iso_ms(message.time_ns),
    }
    return {"username": "cauditd", "allowed_mentions": {"parse": []}, "embeds": [embed]}


def _fields(pairs: list[tuple[str, str]]) -> list[dict[str, Any]]:
    each = max(20, FIELD_BUDGET // max(1, len(pairs)))
    return [
        {
            "name": fit(name, FIELD_NAME_MAX, markdown) or "-",
            "value": fit(value, min(FIELD_VALUE_MAX, each), markdown) or "-",
            "inline": len(value) < 40,
        }
        for name, value in pairs
    ]
