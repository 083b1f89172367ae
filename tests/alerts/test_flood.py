"""Flood control: a burst of 1,000 findings reaches a rate-limited sink as a few messages."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

from tests.alerts.conftest import Daemon, eventually, finding, sink
from tests.alerts.services import ChatServices

RULES = ["Terminal shell in container", "Write below etc", "Outbound connection to mining pool"]
BULLET = re.compile(r"^• (\d+) (?:.+ on \S+|others \(\d+ rule/container pairs\))$")


async def test_a_burst_of_1000_findings_becomes_a_handful_of_messages_that_add_up(
    services: ChatServices, daemon_factory: Callable[..., Daemon]
) -> None:
    daemon = daemon_factory([
        sink("chat", "slack", services.url("slack"), rate_limit="5/s"),
        sink("hook", "webhook", services.url("webhook"), rate_limit="5/s"),
    ])  # fmt: skip
    await daemon.start()
    for burst in range(10):  # 1,000 findings within about a second
        daemon.add(*(
            finding(rule=RULES[(burst + i) % 3], container=f"web-{i % 4}") for i in range(100)
        ))  # fmt: skip
        await asyncio.sleep(0.1)

    await eventually(
        lambda: daemon.status("chat")["delivered"] == daemon.status("hook")["delivered"] == 1000,
        "1,000 findings delivered to both sinks",
    )

    assert services.invalid == []
    slack, hook = services.of("slack"), services.of("webhook")
    assert 2 <= len(slack) <= 25 and 2 <= len(hook) <= 25
    slack_total = 0
    for message in slack:
        header = message.body["attachments"][0]["blocks"][0]["text"]["text"]
        counted = re.match(r"^(\d+) more findings", header)
        if counted is None:
            slack_total += 1
            continue
        body = message.body["attachments"][0]["blocks"][1]["text"]["text"]
        bullets = [BULLET.match(line) for line in body.splitlines()]
        assert all(bullets), body
        assert sum(int(b.group(1)) for b in bullets if b) == int(counted.group(1))
        slack_total += int(counted.group(1))
    assert slack_total == 1000

    ids: list[int] = []
    for message in hook:
        fields = message.body["output_fields"]
        if "summary.count" in fields:
            assert fields["summary.count"] == len(fields["summary.finding_ids"])
            assert sum(g["count"] for g in fields["summary.groups"]) == fields["summary.count"]
            ids.extend(fields["summary.finding_ids"])
        else:
            ids.append(message.body["id"])
    assert ids == daemon.added  # each once, in order
    assert daemon.status("hook")["messages"] == len(hook)
