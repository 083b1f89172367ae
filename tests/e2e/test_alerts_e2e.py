"""The whole chain: a real container's behaviour, the daemon, a local chat webhook receiving it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Containers
from tests.harness import DaemonProcess, write_config

pytestmark = pytest.mark.usefixtures("ebpf", "docker")


class Receiver:
    """A webhook endpoint on 127.0.0.1 recording each JSON body and its delivery headers."""

    def __init__(self) -> None:
        received: list[tuple[dict[str, str], Any]] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.append((dict(self.headers), json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait(self, predicate: Any, timeout: float = 20) -> tuple[dict[str, str], Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for item in list(self.received):
                if predicate(item[1]):
                    return item
            time.sleep(0.1)
        raise AssertionError(f"nothing matching arrived; got {len(self.received)} posts")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def test_shell_in_container_reaches_the_webhook_as_falco_json(
    tmp_path: Path, receiver: Receiver, containers: Containers
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
