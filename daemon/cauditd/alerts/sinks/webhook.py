"""Generic webhook: a POST of the Falco-shaped finding JSON, as Falco's http_output sends it.

falcosidekick (and anything else that takes Falco's HTTP output) accepts it as is. A summary is
sent in the same shape with rule "cauditd alert summary" and its counts in output_fields.
"""

from __future__ import annotations

from typing import Any

from cauditd.alerts.message import Message


def payload(message: Message) -> dict[str, Any]:
    """The finding's (or summary's) JSON document."""
    return message.document
