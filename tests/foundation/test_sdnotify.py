"""systemd's notify protocol, as Type=notify with WatchdogSec= sees it, on a real socket."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

import pytest

from tests.harness import DaemonProcess, write_config

pytestmark = pytest.mark.usefixtures("ebpf")


def test_ready_watchdog_and_stopping_are_sent(tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(30)
        config = write_config(tmp_path / "cauditd.toml", tmp_path / "state")
        daemon = DaemonProcess(config, env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "400000"})
        try:
            daemon.wait_ready()
            states = [sock.recv(256).decode() for _ in range(3)]
            assert states[0] == "READY=1"
            assert states[1:] == ["WATCHDOG=1", "WATCHDOG=1"]
            assert daemon.stop(signal.SIGTERM) == 0
            while (state := sock.recv(256).decode()) == "WATCHDOG=1":
                pass
            assert state == "STOPPING=1"
        finally:
            daemon.kill()
