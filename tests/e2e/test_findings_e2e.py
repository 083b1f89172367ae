"""The whole daemon with real containers: behaviour reaches the API; SIGTERM loses nothing."""

from __future__ import annotations

import signal
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TEST_IMAGE, Containers
from tests.harness import DaemonProcess, write_config

pytestmark = pytest.mark.usefixtures("ebpf", "docker")

MARKER_RULE = """
[[rules]]
name = "Test marker file"
desc = "A file below /tmp/mark- was created (test rule)."
condition = "evt.type in (open, openat, openat2, creat) and fd.name startswith /tmp/mark-"
output = "marker %fd.name in %container.name"
priority = "notice"
suppress_by = ["fd.name"]
"""


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    path = tmp_path / "rules.d"
    path.mkdir()
    (path / "test.toml").write_text(MARKER_RULE)
    return path


@pytest.fixture
def config(tmp_path: Path, rules_dir: Path) -> Path:
    return write_config(  # no finding budget: the tests count one finding per marker file
        tmp_path / "cauditd.toml", tmp_path / "state",
        f'[rules]\npaths = ["{rules_dir}"]\nfinding_budget = 0\n',
    )


@pytest.fixture
def start_daemon(config: Path) -> Iterator[Any]:
    started: list[DaemonProcess] = []

    def start(extra: str = "") -> DaemonProcess:
        if extra:
            config.write_text(config.read_text() + extra)
        proc = DaemonProcess(config)
        started.append(proc)
        return proc.wait_ready()

    yield start
    for proc in started:
        proc.kill()


def all_findings(daemon: DaemonProcess, **filters: str) -> list[dict[str, Any]]:
    """Every finding matching `filters`, following the cursor across pages."""
    found: list[dict[str, Any]] = []
    cursor = ""
    while True:
        query = {**filters, "limit": "1000", **({"cursor": cursor} if cursor else {})}
        page = daemon.get("/v1/findings?" + urllib.parse.urlencode(query))
        found.extend(page["findings"])
        cursor = page.get("next_cursor") or ""
        if not cursor:
            return found


def wait_findings(
    daemon: DaemonProcess, timeout: float = 20, **filters: str
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = all_findings(daemon, **filters)
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"no finding for {filters}")


class StreamReader(threading.Thread):
    """Reads GET /v1/findings/stream and records the ids it is sent, until the server closes."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.ids: list[int] = []

    def run(self) -> None:
        try:
            with urllib.request.urlopen(self.url, timeout=60) as resp:
                for raw in resp:
                    line = raw.decode().rstrip("\n")
                    if line.startswith("id: "):
                        self.ids.append(int(line[4:]))
        except OSError:
            pass  # the daemon went away: what was read so far is what counts


def test_exec_shell_and_sensitive_read_reach_the_api(
    start_daemon: Any, containers: Containers
) -> None:
    daemon = start_daemon()
    result = containers.run("sleep", "60", name="cauditd-t-web", detach=True)
    assert result.returncode == 0, result.stderr
    full_id = containers.inspect_id("cauditd-t-web")
    containers.exec("cauditd-t-web", "cat", "/etc/shadow")
    found = wait_findings(daemon, rule="Read sensitive file untrusted", container="cauditd-t-web")
    finding = found[0]
    assert finding["container"]["id"] == full_id[:12]
    assert finding["container"]["full_id"] == full_id
    assert finding["container"]["image"] == TEST_IMAGE
    assert finding["output_fields"]["fd.name"] == "/etc/shadow"
    assert finding["priority"] == "Warning"
    assert finding["process"]["exe"].endswith("cat") or "cat" in finding["process"]["cmdline"]
    by_short = all_findings(daemon, rule="Read sensitive file untrusted", container=full_id[:12])
    assert [f["id"] for f in by_short] == [f["id"] for f in found]


def test_sigterm_mid_stream_keeps_every_finding(start_daemon: Any, containers: Containers) -> None:
    first = start_daemon()
    stream = StreamReader(
        first.api_url
        + "/v1/findings/stream?"
        + urllib.parse.urlencode({"rule": "Test marker file"})
    )
    stream.start()
    loop = "i=0; while [ $i -lt 20000 ]; do : > /tmp/mark-$i; i=$((i+1)); usleep 500; done"
    assert (
        containers.run("sh", "-c", loop, detach=True, options=("--network", "none")).returncode == 0
    )
    deadline = time.monotonic() + 60
    while len(stream.ids) < 300 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(stream.ids) >= 300, "the marker rule should have fired while the stream was open"
    assert first.stop(signal.SIGTERM) == 0
    stream.join(timeout=10)
    seen = set(stream.ids)

    second = start_daemon()
    stored = {f["id"] for f in all_findings(second, rule="Test marker file")}
    assert seen <= stored, f"{len(seen - stored)} streamed findings missing after restart"
    assert max(stored) >= max(seen)


def test_reload_refuses_a_broken_rule_set_and_keeps_detecting(
    start_daemon: Any, containers: Containers, rules_dir: Path
) -> None:
    daemon = start_daemon()
    (rules_dir / "broken.toml").write_text(
        '[[rules]]\nname = "Broken"\ncondition = "proc.nmae = sh"\noutput = "x"\n'
        'priority = "warning"\n'
    )
    status, body = daemon.post("/v1/rules/reload")
    assert status == 422
    assert any("unknown field 'proc.nmae'" in e for e in body["errors"])
    assert (
        containers.run(
            "sh", "-c", ": > /tmp/mark-after-reload", options=("--network", "none")
        ).returncode
        == 0
    )
    found = wait_findings(daemon, rule="Test marker file")
    assert any(f["output_fields"]["fd.name"] == "/tmp/mark-after-reload" for f in found)

    (rules_dir / "broken.toml").unlink()
    daemon.proc.send_signal(signal.SIGHUP)
    daemon.wait_for("rules reloaded")


def test_containers_gone_within_milliseconds_are_still_named(
    start_daemon: Any, containers: Containers
) -> None:
    """Each container lives for one file creation and the ring buffer is drained only every
    1.5 s: its cgroup is gone before user space could look it up in the tree, so the id must
    come from the kernel's cgroup_mkdir record."""
    daemon = start_daemon("[probes]\npoll_interval_ms = 1500\n")
    names = [f"cauditd-t-short-{i}" for i in range(5)]
    for name in names:
        result = containers.run(
            "sh", "-c", f": > /tmp/mark-{name}", name=name, options=("--network", "none")
        )
        assert result.returncode == 0, result.stderr
    for name in names:
        full_id = containers.inspect_id(name)
        found = wait_findings(daemon, rule="Test marker file", container=full_id[:12])
        assert found[0]["container"]["full_id"] == full_id
        assert found[0]["output_fields"]["fd.name"] == f"/tmp/mark-{name}"
