"""The whole chain: a real container's behaviour, the daemon, a local chat webhook receiving it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Containers
from tests.harness import DaemonProcess, WebhookReceiver, write_config

pytestmark = pytest.mark.usefixtures("ebpf", "docker")


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver()
    yield server
    server.close()


def test_shell_in_container_reaches_the_webhook_as_falco_json(
    tmp_path: Path, receiver: WebhookReceiver, containers: Containers
) -> None:
    config = write_config(
        tmp_path / "cauditd.toml",
        tmp_path / "state",
        f'[[alerts.sinks]]\nname = "hook"\nkind = "webhook"\nurl = "{receiver.url}"\n'
        'min_priority = "warning"\nrate_limit = "none"\n',
    )
    daemon = DaemonProcess(config)
    try:
        daemon.wait_ready()
        assert containers.run("sleep", "60", name="cauditd-t-alert", detach=True).returncode == 0
        full_id = containers.inspect_id("cauditd-t-alert")
        assert containers.exec("cauditd-t-alert", "cat", "/etc/shadow").returncode == 0
        headers, body = receiver.wait(
            lambda b: (
                b.get("rule") == "Read sensitive file untrusted"
                and b["container"]["full_id"] == full_id
            )
        )
    finally:
        daemon.kill()
    for key in ("time", "rule", "priority", "output", "output_fields", "tags", "hostname"):
        assert key in body, f"Falco's alert field {key!r} missing"
    assert body["priority"] == "Warning"
    assert body["container"]["name"] == "cauditd-t-alert"
    assert body["output_fields"]["fd.name"] == "/etc/shadow"
    assert headers["Idempotency-Key"].endswith(f"-{body['id']}-hook")
