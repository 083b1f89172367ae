"""Permanent failures are kept and reported; status() and send_test back the API and cauditctl."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from cauditd.alerts import AlertDispatcher, outbox
from cauditd.config import AlertsConfig, ConfigError
from cauditd.findings import Priority
from tests.alerts.conftest import Daemon, eventually, finding, sink
from tests.alerts.services import ChatServices


async def test_a_4xx_is_a_permanent_failure_kept_in_the_outbox_and_the_sink_moves_on(
    services: ChatServices, daemon_factory: Callable[..., Daemon]
) -> None:
    def reject(service: str, body: dict[str, Any]) -> int:
        return 400 if body["rule"] == "Rejected rule" else 0

    services.reject = reject
    daemon = daemon_factory([sink("hook", "webhook", services.url("webhook"))])
    await daemon.start()
    daemon.add(finding(), finding(rule="Rejected rule"), finding())

    await eventually(
        lambda: daemon.status("hook")["delivered"] + daemon.status("hook")["failed"] == 3,
        "every finding delivered or failed",
    )

    status = daemon.status("hook")
    assert (status["delivered"], status["failed"], status["retries"]) == (2, 1, 0)
    assert status["last_error"].startswith("HTTP 400") and status["last_success"]
    assert [m.body["id"] for m in services.of("webhook")] == [daemon.added[0], daemon.added[2]]
    assert daemon.store is not None
    kept = await daemon.store.run_in_writer(lambda c: outbox.failed(c, "hook"))
    assert [(row.finding.id, error) for row, error in kept] == [
        (daemon.added[1], "HTTP 400: rejected")
    ]


async def test_status_survives_a_restart_and_filters_route_findings(
    services: ChatServices, daemon_factory: Callable[..., Daemon]
) -> None:
    daemon = daemon_factory([
        sink("critical", "slack", services.url("slack"), min_priority="critical"),
        sink("db", "webhook", services.url("webhook"), containers=["db-1"], rules=["Write"]),
    ])  # fmt: skip
    await daemon.start()
    daemon.add(finding(priority=Priority.CRITICAL), finding(), finding(rule="Write",
               container="db-1"), finding(rule="Write", container="web-1"))  # fmt: skip
    # a service holds each message before the daemon has read its answer: wait on the daemon
    await eventually(
        lambda: daemon.status("critical")["delivered"] + daemon.status("db")["delivered"] == 2,
        "two routed messages delivered")
    assert len(services.received) == 2
    await daemon.stop()
    await daemon.start()

    lines = {s["name"]: s for s in daemon.alerts.status()} if daemon.alerts else {}
    assert lines["critical"]["delivered"] == 1 and lines["db"]["delivered"] == 1
    assert lines["critical"]["kind"] == "slack" and lines["db"]["queue_depth"] == 0
    assert [m.body["id"] for m in services.of("webhook")] == [daemon.added[2]]


async def test_send_test_reports_success_and_the_service_answer(
    services: ChatServices, daemon_factory: Callable[..., Daemon]
) -> None:
    daemon = daemon_factory([
        sink("ok", "discord", services.url("discord")),
        sink("gone", "slack", services.url("no-such-hook")),
    ])  # fmt: skip
    await daemon.start()
    assert daemon.alerts is not None

    good = await daemon.alerts.send_test("ok")
    bad = await daemon.alerts.send_test("gone")

    assert good["ok"] and good["status"] is None and good["kind"] == "discord"
    assert services.of("discord")[0].body["embeds"][0]["title"] == "Notice: cauditd test alert"
    assert services.of("discord")[0].key == good["idempotency_key"]
    assert not bad["ok"] and bad["status"] == 404 and "no_service" in bad["error"]
    with pytest.raises(KeyError):
        await daemon.alerts.send_test("nope")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"kind": "irc", "url": "http://127.0.0.1:9/"}, "unknown kind"),
        ({"kind": "slack"}, "needs url or url_file"),
        ({"kind": "slack", "url": "http://127.0.0.1:9/", "rate_limit": "lots"}, "rate limit"),
        ({"kind": "exec"}, "needs a command"),
        ({"kind": "teams", "url": "http://127.0.0.1:9/", "format": "html"}, "teams format"),
        ({"kind": "slack", "url_file": "/nonexistent/url"}, "cannot read url_file"),
    ],
)
def test_bad_sink_configs_are_config_errors(options: dict[str, Any], message: str) -> None:
    config = AlertsConfig(sinks=[sink("s1", **options)])
    with pytest.raises(ConfigError, match=message):
        AlertDispatcher(config, store=None)  # type: ignore[arg-type]
