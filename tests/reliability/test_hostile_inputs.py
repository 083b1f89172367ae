"""Hostile inputs through the real daemon: a container whose comm, exe, argv (4 KiB+) and file
names hold bytes that are not UTF-8, newlines, ANSI/OSC sequences and chat mentions.

At runtime every finding is stored and served as strict JSON, each chat service gets inert
text, cauditctl on a terminal prints no control sequence and no fake row, and no log line
carries one. At start-up, a daemon (re)started while that process lives gets ready and goes on
detecting (it used to exit: issue 11).
"""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.alerts.test_hostile_markup import EVERYWHERE, FORBIDDEN, strings
from tests.conftest import Containers
from tests.harness import DaemonProcess, write_config
from tests.reliability.receiver import ChatThread, get_raw, sinks_toml, strict_json, wait_until

pytestmark = pytest.mark.usefixtures("ebpf", "docker")

SERVICES = [("slack", "slack"), ("discord", "discord"), ("mattermost", "mattermost"),
            ("googlechat", "googlechat"), ("teams", "teams"), ("webhook", "webhook")]
EXPECTED_RULES = {"Read sensitive file untrusted", "Write below etc"}
# A child of the shell, not the container's entrypoint (which the file rules leave alone).
NOT_THE_ENTRYPOINT = ("sh", "-c")
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202e]")


def findings_of(daemon: DaemonProcess, container: str) -> list[dict[str, Any]]:
    """Findings about `container` (its id: a busy engine may answer after the first findings,
    which then carry the short id as the container's name)."""
    status, raw = get_raw(daemon.api_url, f"/v1/findings?container={container}&limit=100")
    assert status == 200
    return list(strict_json(raw)["findings"])


def rules_found(daemon: DaemonProcess, container: str) -> set[str]:
    return {f["rule"] for f in findings_of(daemon, container)}


def cauditctl_on_a_terminal(api_url: str, container: str) -> str:
    """`cauditctl findings --container ID` with its stdout on a pseudo-terminal."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cauditd.ctl", "--url", api_url, "findings", "--container",
         container],
        stdout=slave, stderr=subprocess.PIPE, env={**os.environ, "COLUMNS": "200"},
    )
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 30)
        if not ready:
            break
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the terminal's other end closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    assert proc.wait(30) == 0, proc.stderr.read() if proc.stderr else ""
    os.close(master)
    return b"".join(chunks).decode("utf-8")


def test_hostile_names_at_runtime_and_at_start_up(tmp_path: Path, containers: Containers) -> None:
    name = f"cauditd-t-hostile-{uuid.uuid4().hex[:8]}"
    with ChatThread() as chat:
        config = write_config(tmp_path / "c.toml", tmp_path / "state", sinks_toml(chat, SERVICES))
        daemon = DaemonProcess(config).wait_ready()
        try:
            result = containers.run(*NOT_THE_ENTRYPOINT, "cauditd_hostile exec 90; :", name=name,
                                    detach=True, options=("--network", "none"))
            assert result.returncode == 0, result.stderr
            short_id = result.stdout.strip()[:12]
            wait_until(lambda: rules_found(daemon, short_id) >= EXPECTED_RULES, "the findings")
            found = findings_of(daemon, short_id)
            assert any("\\xff" in f["output"] for f in found)
            assert all("\udcff" not in str(f) for f in found)
            wait_until(lambda: all(chat.of(s) for s, _ in SERVICES), "every chat service")
            check_chat(chat, short_id)
            check_terminal(cauditctl_on_a_terminal(daemon.api_url, short_id), len(found))
        finally:
            assert daemon.stop() == 0
        check_log(daemon.lines)

        restarted = DaemonProcess(config).wait_ready()  # the hostile process still lives
        try:
            assert containers.exec(name, "cauditd_hostile", "exec", "1").returncode == 0
            wait_until(lambda: len(findings_of(restarted, short_id)) > len(found), "new findings")
            _, raw = get_raw(restarted.api_url, "/v1/stats")
            stats = strict_json(raw)
            assert set(stats["pipeline"]["events_failed"].values()) == {0}
        finally:
            assert restarted.stop() == 0
        check_log(restarted.lines)


def check_chat(chat: ChatThread, short_id: str) -> None:
    assert chat.invalid == []
    for service, _ in SERVICES:
        messages = [m.body for m in chat.of(service) if short_id in str(m.body)]
        assert messages, f"no message about {short_id} reached {service}"
        if service == "webhook":
            for body in messages:
                assert "\udcff" not in str(body)
            continue
        for body in messages:
            texts = strings(body)
            for pattern in FORBIDDEN[service] + [re.escape(c) for c in EVERYWHERE]:
                assert not any(re.search(pattern, t) for t in texts), (service, pattern, body)


def check_terminal(output: str, findings: int) -> None:
    colours = re.compile(r"\x1b\[(?:1;)?3\dm|\x1b\[0m")  # cauditctl's own priority colours
    assert not CONTROL.search(colours.sub("", output).replace("\r\n", "\n"))
    rows = [line for line in output.splitlines() if line.strip()]
    assert len(rows) == findings + 1, output  # a header and one row per finding, no fake rows
    assert "\\x1b]0;pwned\\x07" in output


def check_log(lines: list[str]) -> None:
    assert not [line for line in lines if CONTROL.search(line)]


def test_a_process_that_cannot_be_read_never_stops_start_up(
    tmp_path: Path, containers: Containers
) -> None:
    """Start-up alone, with the hostile process already running before the first daemon."""
    name = f"cauditd-t-hostile-{uuid.uuid4().hex[:8]}"
    result = containers.run(*NOT_THE_ENTRYPOINT, "cauditd_hostile exec 60; :", name=name,
                            detach=True, options=("--network", "none"))
    assert result.returncode == 0, result.stderr
    short_id = result.stdout.strip()[:12]
    wait_until(lambda: "ready" in subprocess.run(["docker", "logs", name], capture_output=True,
                                                 text=True).stdout, "the hostile process")
    daemon = DaemonProcess(write_config(tmp_path / "c.toml", tmp_path / "state")).wait_ready()
    try:
        assert daemon.proc.poll() is None
        assert containers.exec(name, "cat", "/etc/shadow").returncode == 0
        wait_until(lambda: "Read sensitive file untrusted" in rules_found(daemon, short_id),
                   "a finding after start-up")
    finally:
        assert daemon.stop(signal.SIGTERM) == 0
