"""Mattermost and Rocket.Chat incoming webhooks: Slack's legacy attachments, which both accept.

Neither renders Block Kit; both take `text` plus `attachments` with colour, title, text and
short fields. Kept under Rocket.Chat's default 5000-character message size per text.
"""

from __future__ import annotations

from typing import Any

from cauditd.alerts.message import Message, clip

TEXT_MAX = 4000
TITLE_MAX = 256
FIELD_MAX = 1000


def payload(message: Message) -> dict[str, Any]:
    """The webhook body: a one-line `text` and one coloured attachment."""
    body = "\n".join(f"- {line}" for line in message.summary_lines) or message.text
    attachment = {
        "fallback": clip(message.title, TITLE_MAX),
        "color": message.colour,
        "title": clip(message.title, TITLE_MAX),
        "text": clip(body or "(no output)", TEXT_MAX),
        "fields": [
            {"short": len(value) < 40, "title": name, "value": clip(value, FIELD_MAX)}
            for name, value in message.fields
        ],
        "footer": clip(f"cauditd on {message.hostname}", TITLE_MAX),
        "ts": message.time_ns // 1_000_000_000,
    }
    return {"text": clip(message.title, TITLE_MAX), "attachments": [attachment]}
