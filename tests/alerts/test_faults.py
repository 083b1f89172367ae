"""Delivery through faults: 500s, 429/503 with Retry-After, hangs, refused connections, restart."""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable

from tests.alerts.conftest import Daemon, eventually, finding, sink
from tests.alerts.services import ChatServices, Fault, Received

KEY_ID = re.compile(r"-(\d+)-chat$")


def finding_ids(item: Received) -> list[int]:
    """The finding ids a received message stands for (webhook body, or the Slack key)."""
    if item.service == "webhook":
        fields = item.body["output_fields"]
        if "summary.count" in fields:
            return list(fields["summary.finding_ids"])
        return [item.body["id"]]
    match = KEY_ID.search(item.key)
    assert match, item.key
    return [int(match.group(1))]


def processed(services: ChatServices, service: str, key_suffix: str) -> list[int]:
    """Finding ids a de-duplicating receiver processed for one sink, in arrival order."""
    return [
        i for item in services.unique(service) if item.key.endswith(key_suffix)
        for i in finding_ids(item)
    ]  # fmt: skip


def connection_refused_seen(daemon: Daemon, names: list[str]) -> bool:
    return all((daemon.status(n)["last_error"] or "").startswith("connection") for n in names)


async def test_every_finding_arrives_once_in_order_through_faults_and_a_restart(
    daemon_factory: Callable[..., Daemon],
) -> None:
    faulty, calm = ChatServices(), ChatServices()
    await faulty.start()
    await calm.start()
    sinks = [
        sink("hook", "webhook", faulty.url("webhook"), timeout_s=0.3),
        sink("chat", "slack", faulty.url("slack"), timeout_s=0.3),
        sink("hook-limited", "webhook", faulty.url("webhook"), timeout_s=0.3, rate_limit="2/s"),
        sink("calm", "discord", calm.url("discord")),
    ]
    faulty_names = ["hook", "chat", "hook-limited"]
    daemon = daemon_factory(sinks)
    try:
        await daemon.start()
        # 500s, then 429 and 503 with Retry-After (seconds, HTTP date), then two hangs past
        # the client timeout (processed by the receiver, so the retry is a raw duplicate).
        faulty.faults = deque([Fault(500)] * 4 + [
            Fault(429, retry_after="1"), Fault(503, retry_after_date_s=1.0),
            Fault(hang_s=1.0), Fault(hang_s=1.0),
        ])  # fmt: skip
        faulty.default_status = 500  # then stay down until the port closes
        daemon.add(*(finding(container=f"web-{i % 3}") for i in range(5)))
        await eventually(lambda: not faulty.faults, "every scripted fault served")

        await faulty.stop()  # the port now refuses connections
        daemon.add(*(finding(rule="Write below etc", container="db-1") for _ in range(5)))
        await eventually(lambda: connection_refused_seen(daemon, faulty_names), "refused")
        await eventually(lambda: len(calm.unique("discord")) == 10, "calm sink unaffected")

        await daemon.stop()  # the daemon restarts in the middle of the outage
        await daemon.start()
        assert sum(daemon.status(n)["queue_depth"] for n in faulty_names) == 30
        daemon.add(*(finding(container="web-9") for _ in range(5)))
        await eventually(lambda: connection_refused_seen(daemon, faulty_names), "refused again")

        faulty.default_status = 0
        await faulty.start()  # recovers on the same port
        await eventually(
            lambda: all(daemon.status(s.name)["queue_depth"] == 0 for s in sinks),
            "every outbox drained",
        )
    finally:
        await faulty.stop()
        await calm.stop()

    expected = daemon.added
    assert len(expected) == 15 and expected == sorted(expected)
    assert faulty.invalid == [] and calm.invalid == []
    assert processed(faulty, "webhook", "-hook") == expected
    assert processed(faulty, "slack", "-chat") == expected
    assert processed(faulty, "webhook", "-hook-limited") == expected
    assert [i for item in calm.unique("discord") for i in [int(item.key.split("-")[-2])]] == (
        expected
    )
    raw_duplicates = len(faulty.received) - sum(len(faulty.unique(s)) for s in ("webhook", "slack"))
    assert raw_duplicates >= 2  # the two hung requests were retried and de-duplicated
    for name in faulty_names:
        status = daemon.status(name)
        assert status["failed"] == 0 and status["retries"] > 0
