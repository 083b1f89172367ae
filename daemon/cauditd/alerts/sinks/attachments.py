"""Mattermost and Rocket.Chat incoming webhooks: Slack's legacy attachments, which both accept.

Neither renders Block Kit; both take `text` plus `attachments` with colour, title, text and
short fields, in Markdown (escaped: alerts.markup.markdown). Kept under Rocket.Chat's default
5000-character message size per text.
"""

from __future__ import annotations

from typing import Any

from cauditd.alerts.markup import fit, markdown
from cauditd.alerts.message import Message

TEXT_MAX = 4000
TITLE_MAX = 256
FIELD_MAX = 1000


def payload(message: Message) -> dict[str, Any]:
    """The webhook body: a one-line `text` and one coloured attachment."""
    body = "\n".join(f"- {line}" for line in message.summary_lines) or message.text
    title = fit(message.title, TITLE_MAX, markdown)
    attachment = {
        "fallback": title,
        "color": message.colour,
        "title": title,
        "text": fit(body or "(no output)", TEXT_MAX, markdown),
        "fields": [
            {"short": len(value) < 40, "title": markdown(name),
             "value": fit(value, FIELD_MAX, markdown)}
            for name, value in message.fields
        ],
        "footer": fit(f"cauditd on {message.hostname}", TITLE_MAX, markdown),
        "ts": message.time_ns // 1_000_000_000,
    }
    return {"text": title, "attachments": [attachment]}
