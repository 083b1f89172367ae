"""Google Chat incoming webhooks: a text message (4096 characters at most) in Chat's markup.

Text messages carry no colour; the priority is shown as a coloured marker before the title. The
markup has no escapes: values are made inert by alerts.markup.googlechat.
"""

from __future__ import annotations

from typing import Any

from cauditd.alerts.markup import fit, googlechat
from cauditd.alerts.message import Message
from cauditd.findings import Priority

TEXT_MAX = 4096
MARKERS = {
    Priority.EMERGENCY: "🟣", Priority.ALERT: "🔴", Priority.CRITICAL: "🔴",
    Priority.ERROR: "🟠", Priority.WARNING: "🟡", Priority.NOTICE: "🔵",
    Priority.INFORMATIONAL: "🟢", Priority.DEBUG: "⚪",
}  # fmt: skip


def payload(message: Message) -> dict[str, Any]:
    """The webhook body: {"text": ...} with the title, the fields and as much output as fits."""
    head = f"{MARKERS[message.priority]} *{fit(message.title, 300, googlechat)}*"
    fields = "\n".join(f"*{googlechat(name)}:* {fit(value, 300, googlechat)}"
                       for name, value in message.fields)
    body = "\n".join(f"• {line}" for line in message.summary_lines) or message.text
    room = TEXT_MAX - len(head) - len(fields) - 4
    return {"text": f"{head}\n{fit(body or '(no output)', room, googlechat)}\n\n{fields}"}
