"""The Docker engine restarted under the daemon, and down when the daemon starts: the daemon
keeps running, and container metadata comes back once the engine answers. Against a private
engine of the test's own (tests.reliability.dockerd), never the host's shared one."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.conftest import TEST_IMAGE
from tests.harness import DaemonProcess, write_config
from tests.reliability.dockerd import PrivateDockerd

pytestmark = pytest.mark.usefixtures("ebpf", "docker")
T = TypeVar("T")
RULE = "Read sensitive file untrusted"


@pytest.fixture
def engine() -> Iterator[PrivateDockerd]:
    private = PrivateDockerd()
    try:
        private.start()
        private.load_test_image()
        yield private
    finally:
        private.destroy()


def _daemon(tmp_path: Path, engine: PrivateDockerd) -> DaemonProcess:
    config = write_config(tmp_path / "cauditd.toml", tmp_path / "state",
                          f'[probes]\ndocker_socket = "{engine.socket}"\n'
                          "[network]\nenabled = false\n")
    return DaemonProcess(config)


def _until(check: Callable[[], T], what: str, daemon: DaemonProcess, timeout: float = 30) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            log = "\n".join(line for line in daemon.lines[-60:] if " DEBUG " not in line)
            raise AssertionError(f"timed out waiting for {what}; log:\n{log}")
        time.sleep(0.3)


def _container(daemon: DaemonProcess, full_id: str) -> dict[str, Any] | None:
    return next((c for c in daemon.get("/v1/containers")["containers"] if c["id"] == full_id),
                None)


def _finding_names(daemon: DaemonProcess, full_id: str) -> list[str]:
    found = daemon.get(f"/v1/findings?container={full_id}&rule={RULE.replace(' ', '%20')}")
    return [f["container"]["name"] for f in found["findings"]]


def _read_shadow(engine: PrivateDockerd, name: str) -> None:
    engine.docker("exec", name, "sh", "-c", "cat /etc/shadow >/dev/null; true")


def _run(engine: PrivateDockerd, name: str) -> str:
    return engine.docker("run", "-d", "--name", name, "--network", "none", TEST_IMAGE,
                         "sleep", "600")


def _healthy(daemon: DaemonProcess) -> None:
    assert daemon.proc.poll() is None, "the daemon exited"
    assert daemon.get("/healthz") is not None
    assert not [line for line in daemon.lines if "Traceback" in line]


@pytest.mark.timeout(300)
def test_engine_restarted_while_the_daemon_runs(tmp_path: Path, engine: PrivateDockerd) -> None:
    daemon = _daemon(tmp_path, engine)
    try:
        daemon.wait_ready()
        before = _run(engine, "cauditd-t-dr-before")
        _until(lambda: (c := _container(daemon, before)) and c["name"] == "cauditd-t-dr-before",
               "metadata of the first container", daemon)
        engine.stop()  # live-restore: the container keeps running
        time.sleep(5)  # the daemon's event stream broke; a few reconnects fail
        _healthy(daemon)
        engine.start()
        after = _run(engine, "cauditd-t-dr-after")
        for full_id, name in ((before, "cauditd-t-dr-before"),
                              (after, "cauditd-t-dr-after")):
            _read_shadow(engine, name)
            assert _until(lambda i=full_id: _finding_names(daemon, i), f"{name}'s finding",
                          daemon) == [name]
        _healthy(daemon)
    finally:
        assert daemon.stop() == 0


@pytest.mark.timeout(300)
def test_engine_down_when_the_daemon_starts(tmp_path: Path, engine: PrivateDockerd) -> None:
    running = _run(engine, "cauditd-t-dr-early")
    engine.stop()  # its container keeps running (live-restore), nobody to ask about it
    daemon = _daemon(tmp_path, engine)
    try:
        daemon.wait_ready()
        seen = _until(lambda: _container(daemon, running), "the container from its cgroup",
                      daemon)
        assert seen["name"] == ""  # nobody could say yet
        _healthy(daemon)
        engine.start()
        _until(lambda: (c := _container(daemon, running)) and c["name"] == "cauditd-t-dr-early",
               "its metadata once the engine answers", daemon)
        _read_shadow(engine, "cauditd-t-dr-early")
        assert _until(lambda: _finding_names(daemon, running), "its finding", daemon) == \
            ["cauditd-t-dr-early"]
        _healthy(daemon)
    finally:
        assert daemon.stop() == 0
