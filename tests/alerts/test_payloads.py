"""Each sink kind against a local server that validates the payload shape its service documents."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from cauditd.alerts.message import COLOURS, ELLIPSIS
from cauditd.findings import Priority
from tests.alerts.conftest import Daemon, eventually, finding, sink
from tests.alerts.services import ChatServices

MAIN_TEXT: dict[str, Callable[[dict[str, Any]], str]] = {
    "slack": lambda b: b["attachments"][0]["blocks"][1]["text"]["text"],
    "mattermost": lambda b: b["attachments"][0]["text"],
    "rocketchat": lambda b: b["attachments"][0]["text"],
    "discord": lambda b: b["embeds"][0]["description"],
    "teams": lambda b: b["attachments"][0]["content"]["body"][1]["text"],
    "teams-legacy": lambda b: b["sections"][0]["text"],
    "googlechat": lambda b: b["text"],
    "webhook": lambda b: b["output"],
}
COLOUR: dict[str, Callable[[dict[str, Any]], str]] = {
    "slack": lambda b: b["attachments"][0]["color"],
    "mattermost": lambda b: b["attachments"][0]["color"],
    "rocketchat": lambda b: b["attachments"][0]["color"],
    "discord": lambda b: f"#{b['embeds'][0]['color']:06x}",
    "teams-legacy": lambda b: "#" + b["themeColor"],
}
KINDS = [  # (service path, sink kind, options)
    ("slack", "slack", {}),
    ("mattermost", "mattermost", {}),
    ("rocketchat", "rocketchat", {}),
    ("discord", "discord", {}),
    ("teams", "teams", {}),  # a Workflows URL (not a connector host): Adaptive Card
    ("teams-legacy", "teams", {"format": "messagecard"}),
    ("googlechat", "googlechat", {}),
    ("webhook", "webhook", {}),
]
LONG_OUTPUT = ("Shell <sh> & friends ünïcödé 🐚 " * 4000)[:100_000]


@pytest.mark.parametrize(("service", "kind", "options"), KINDS, ids=[k[0] for k in KINDS])
async def test_long_and_normal_findings_are_accepted_by_the_service(
    services: ChatServices, daemon_factory: Callable[..., Daemon],
    service: str, kind: str, options: dict[str, Any],
) -> None:  # fmt: skip
    daemon = daemon_factory([sink("chat", kind, services.url(service), **options)])
    await daemon.start()
    long = finding(
        output=LONG_OUTPUT, container="c" * 600, priority=Priority.CRITICAL,
        output_fields={f"field.{i}": "v" * 5000 for i in range(40)},
    )  # fmt: skip
    normal = finding(output="Normal output: sh -i in web-1", priority=Priority.NOTICE)
    repeated = finding(priority=Priority.ERROR, count=5)
    daemon.add(long, normal, repeated)

    await eventually(lambda: len(services.of(service)) == 3, f"3 messages at {service}")

    assert services.invalid == []
    first, second, third = services.of(service)
    text = MAIN_TEXT[service](first.body)
    if service == "webhook":
        assert text == LONG_OUTPUT and first.body["id"] == long.id
    else:
        assert ELLIPSIS in text and len(text) <= 20_000
    assert "Normal output: sh -i in web-1" in MAIN_TEXT[service](second.body)
    if service in COLOUR:
        assert COLOUR[service](first.body).lower() == COLOURS[Priority.CRITICAL]
        assert COLOUR[service](second.body).lower() == COLOURS[Priority.NOTICE]
    for item, sent in zip((first, second, third), (long, normal, repeated), strict=True):
        assert item.key == item.delivery
        assert re.fullmatch(rf"cauditd-[\w.-]+-{sent.id}-chat", item.key)
    # the service has answered the third; the outbox counts it once it has read that answer
    await eventually(lambda: daemon.status("chat")["delivered"] == 3, "3 counted as delivered")


@pytest.mark.parametrize(("service", "kind", "options"), KINDS, ids=[k[0] for k in KINDS])
async def test_rate_limited_findings_arrive_as_a_valid_summary(
    services: ChatServices, daemon_factory: Callable[..., Daemon],
    service: str, kind: str, options: dict[str, Any],
) -> None:  # fmt: skip
    daemon = daemon_factory([sink("chat", kind, services.url(service), rate_limit="2/s",
                                  **options)])  # fmt: skip
    await daemon.start()
    daemon.add(finding(), finding(), finding(container="db-1"), finding(rule="Write below etc"))

    await eventually(lambda: daemon.status("chat")["delivered"] == 4, "4 findings delivered")

    assert services.invalid == []
    messages = services.of(service)
    assert len(messages) == 3
    summary = messages[2].body
    if service == "webhook":
        assert summary["output_fields"]["summary.count"] == 2
        assert summary["output_fields"]["summary.finding_ids"] == daemon.added[2:]
    text = MAIN_TEXT[service](summary)
    assert "1 Terminal shell in container on db-1" in text
    assert "1 Write below etc on web-1" in text
    assert messages[2].key.endswith(f"-{daemon.added[2]}-{daemon.added[3]}-summary-chat")


BAD_PAYLOADS = [  # what each real service refuses; the fakes must refuse it too
    ("slack", {"attachments": [{"color": "#ff0000", "blocks": [
        {"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}]}]}),
    ("slack", {"blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}]}),
    ("discord", {"embeds": [{"title": "t", "description": "d" * 4097}]}),
    ("discord", {"embeds": [{"description": "d" * 4000, "fields": [
        {"name": "n", "value": "v" * 1024}] * 3}]}),
    ("teams", {"type": "message", "attachments": [{
        "contentType": "application/vnd.microsoft.card.adaptive",
        "content": {"type": "AdaptiveCard", "version": "1.4",
                    "body": [{"type": "TextBlock", "text": "x" * 30_000}]}}]}),
    ("teams-legacy", {"@type": "MessageCard", "@context": "https://schema.org/extensions"}),
    ("googlechat", {"text": "x" * 4097}),
    ("webhook", {"rule": "r", "priority": "Loud", "output": "o", "time": "now"}),
]  # fmt: skip


@pytest.mark.parametrize(("service", "payload"), BAD_PAYLOADS)
async def test_fake_services_refuse_what_the_real_ones_refuse(
    services: ChatServices, service: str, payload: dict[str, Any]
) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(services.url(service), json=payload) as response,
    ):
        assert response.status == 400
    assert len(services.invalid) == 1 and services.received == []
