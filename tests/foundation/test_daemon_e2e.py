"""The daemon end to end: start, see a container's exec with its id, stop cleanly, leave nothing."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Containers, unavailable
from tests.harness import DaemonProcess, write_config

pytestmark = pytest.mark.usefixtures("ebpf", "docker")


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(tmp_path / "cauditd.toml", tmp_path / "state", "[rules]\npaths = []\n")


@pytest.fixture
def daemon(config: Path) -> Iterator[DaemonProcess]:
    proc = DaemonProcess(config)
    try:
        yield proc.wait_ready()
    finally:
        proc.kill()


def loaded_programs() -> dict[int, str]:
    """Every BPF program loaded in the kernel now: id -> type."""
    try:
        out = subprocess.run(
            ["bpftool", "prog", "show", "-j"], capture_output=True, text=True, check=True
        )
    except FileNotFoundError:
        unavailable("bpftool missing (apt-get install bpftool)")
    return {p["id"]: p.get("type", "") for p in json.loads(out.stdout or "[]")}


def program_name(prog_id: int) -> str:
    out = subprocess.run(["bpftool", "prog", "show", "id", str(prog_id)], capture_output=True,
                         text=True)
    return out.stdout.strip() or out.stderr.strip()


def programs_held_by(pid: int) -> set[int]:
    """Ids of the BPF programs whose file descriptors process `pid` holds (from fdinfo)."""
    ids = set()
    for info in Path(f"/proc/{pid}/fdinfo").iterdir():
        try:
            text = info.read_text()
        except OSError:
            continue
        ids.update(int(m) for m in re.findall(r"^prog_id:\s*(\d+)", text, re.M))
    return ids


def test_exec_in_container_is_reported_with_its_id(
    daemon: DaemonProcess, containers: Containers
) -> None:
    result = containers.run("/bin/true", name="cauditd-t-exec")
    assert result.returncode == 0, result.stderr
    full_id = containers.inspect_id("cauditd-t-exec")
    line = daemon.wait_for(rf"exec container={full_id[:12]} pid=\d+ exe=/bin/true")
    assert "exe=/bin/true" in line


def test_host_processes_are_not_reported(daemon: DaemonProcess) -> None:
    subprocess.run(["/bin/true"], check=True)
    subprocess.run(["/usr/bin/env", "true"], check=True)
    time.sleep(0.5)
    assert not [line for line in daemon.lines if "exec container=" in line and "/bin/true" in line]


def test_sigterm_stops_cleanly_and_detaches(daemon: DaemonProcess) -> None:
    ours = programs_held_by(daemon.proc.pid)
    assert ours, "the daemon should hold BPF programs while it runs"
    assert ours <= set(loaded_programs())
    assert daemon.stop(signal.SIGTERM) == 0
    assert any("cauditd stopped" in line for line in daemon.lines)
    # A tc filter's program is released by deferred (RCU) work after the filter is deleted:
    # on a loaded machine it can outlive the daemon's exit by a moment.
    for _ in range(50):
        if not ours & set(loaded_programs()):
            break
        time.sleep(0.1)
    assert ours & set(loaded_programs()) == set()


def test_sighup_reloads(daemon: DaemonProcess) -> None:
    os.kill(daemon.proc.pid, signal.SIGHUP)
    daemon.wait_for("reloaded")
    assert daemon.proc.poll() is None


def test_sigkill_leaves_nothing_attached(daemon: DaemonProcess) -> None:
    """The probes' programs go with the daemon's file descriptors. The tc programs on the veths
    of containers running meanwhile stay attached (a killed daemon cannot detach them) until the
    next start removes them (tests/network/test_tc.py, test_killed_daemon_leftovers_...)."""
    ours = programs_held_by(daemon.proc.pid)
    assert ours
    daemon.stop(signal.SIGKILL)

    def left() -> set[int]:
        return {i for i, kind in loaded_programs().items() if i in ours and kind != "sched_cls"}

    deadline = time.monotonic() + 10  # the kernel frees some from a work queue: late when busy
    while left() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert left() == set(), [program_name(i) for i in sorted(left())]
