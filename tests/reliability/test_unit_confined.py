"""`cauditd run` under the unit's own confinement without systemd: the seccomp deny-list and its
errno, the capability bounding set, no_new_privs and the namespace restrictions, all derived from
systemd/cauditd.service (tests/reliability/unitfile.py). The cheap companion of test_unit.py,
which runs the unit under a real systemd: a unit that denies what BCC needs fails here too. The
network monitor, off in test_unit.py's machine (its PID namespace hides the containers' pids),
is checked here: a flow between two containers of the test is seen under the confinement.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, Containers
from tests.harness import DaemonProcess, write_config
from tests.reliability.unitfile import (
    confine_command,
    confinement,
    denied_syscalls,
    restricted_namespaces,
    syscall_group,
)

ENV = {"PYTHONPATH": str(REPO)}


@pytest.fixture(scope="module", autouse=True)
def tools() -> None:
    from tests.conftest import unavailable

    for tool in ("systemd-analyze", "setpriv"):
        if subprocess.run(["which", tool], capture_output=True).returncode != 0:
            unavailable(f"{tool} missing (scripts/bootstrap.sh --test installs it)")
    try:
        import seccomp  # noqa: F401
    except ImportError:
        unavailable("python3-seccomp missing (scripts/bootstrap.sh --test installs it)")


@pytest.mark.parametrize(("lines", "denied", "allowed"), [
    (["~@debug"], {"ptrace", "perf_event_open"}, set()),
    (["~@debug @mount", "perf_event_open"], {"ptrace", "mount"}, {"perf_event_open"}),
    (["~@debug", "perf_event_open", "~perf_event_open"], {"perf_event_open"}, set()),
    (["~@debug", "", "~@mount"], {"mount"}, {"ptrace"}),
    (["~@privileged"], {"bpf", "setuid", "init_module"}, {"read"}),  # nested @module
])
def test_filter_lines_combine_as_systemd_combines_them(
    lines: list[str], denied: set[str], allowed: set[str]
) -> None:
    result = denied_syscalls(lines)
    assert denied <= result and not (allowed & result)


def test_namespace_restrictions() -> None:
    assert restricted_namespaces(["~user pid"]) == {"user", "pid"}
    assert restricted_namespaces(["net mnt"]) == {"cgroup", "ipc", "pid", "user", "uts"}
    assert restricted_namespaces(["yes", "no"]) == set()


def test_the_unit_keeps_exactly_perf_event_open_from_debug() -> None:
    """BCC attaches every tracepoint with perf_event_open; the rest of @debug stays denied."""
    confined = confinement()
    assert "perf_event_open" not in confined.denied_syscalls
    assert syscall_group("@debug") - {"perf_event_open"} <= confined.denied_syscalls
    assert confined.errno == errno.EPERM and confined.no_new_privileges
    assert "CAP_SETPCAP" not in confined.capabilities


def status_of(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


def wait_for_finding(daemon: DaemonProcess, container: str, rule: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = daemon.get(f"/v1/findings?container={container}")["findings"]
        if any(f["rule"] == rule for f in found):
            return
        time.sleep(0.3)
    raise AssertionError(f"no {rule!r} finding for {container}")


def test_cauditd_run_starts_and_detects_under_the_units_confinement(
    ebpf: None, containers: Containers, tmp_path: Path
) -> None:
    confined = confinement()
    config = write_config(tmp_path / "c.toml", tmp_path / "state")
    daemon = DaemonProcess(config, env=ENV, wrapper=confine_command(confined))
    try:
        daemon.wait_ready(timeout=120)
        status = status_of(daemon.proc.pid)
        assert status["Seccomp"] == "2" and status["NoNewPrivs"] == "1"
        assert int(status["CapBnd"], 16).bit_count() == len(confined.capabilities)
        name = containers.run("sleep", "60", detach=True, options=("--network", "none")).stdout
        assert name.strip(), "container did not start"
        shadow = containers.exec(containers.names[-1], "cat", "/etc/shadow")
        assert shadow.returncode == 0, shadow.stderr
        wait_for_finding(daemon, containers.names[-1], "Read sensitive file untrusted")
        wait_for_flow(daemon, containers)
    finally:
        assert daemon.stop() == 0, "\n".join(daemon.lines[-40:])


def wait_for_flow(daemon: DaemonProcess, containers: Containers, timeout: float = 60) -> None:
    """The network monitor works confined too (tc filters over netlink, the veth lookup through
    /proc/<pid>/ns/net): a connection between two containers of this test on Docker's bridge
    is a flow of the client's (no packet leaves the bridge)."""
    server = containers.run("sh", "-c", "while :; do nc -l -p 8080 </dev/null; done",
                            detach=True).stdout.strip()
    address = subprocess.run(
        ["docker", "inspect", "-f", "{{.NetworkSettings.IPAddress}}", server],
        capture_output=True, text=True, check=True).stdout.strip()
    assert address, "the server container has no bridge address"
    client = containers.run("sleep", "60", detach=True).stdout.strip()
    assert client, "client container did not start"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        containers.exec(containers.names[-1], "sh", "-c", f"echo hi | nc -w 1 {address} 8080")
        flows = daemon.get(f"/v1/flows?container={containers.names[-1]}&port=8080")["flows"]
        if flows:
            return
        time.sleep(1)
    raise AssertionError(f"no flow to {address}:8080 from the client; network stats "
                         f"{daemon.get('/v1/stats')['network']}")


def test_a_unit_that_denies_perf_event_open_fails_here(ebpf: None, tmp_path: Path) -> None:
    """The regression this guards against: the filter as it was (all of @debug denied)."""
    confined = confinement()
    broken = dataclasses.replace(
        confined, denied_syscalls=confined.denied_syscalls | {"perf_event_open"}
    )
    config = write_config(tmp_path / "c.toml", tmp_path / "state", "[network]\nenabled = false\n")
    daemon = DaemonProcess(config, env=ENV, wrapper=confine_command(broken))
    code = daemon.proc.wait(timeout=120)
    daemon._reader.join(timeout=10)
    log = "\n".join(daemon.lines)
    assert code != 0, log[-2000:]
    assert "perf_event_open" in log and "Operation not permitted" in log, log[-2000:]


def test_exec_sink_programs_run_without_the_units_capabilities() -> None:
    """Under the unit the daemon holds no CAP_SETPCAP, so the bounding set stays; no_new_privs
    still keeps the program's permitted and effective sets empty."""
    confined = confine_command(confinement())
    report = ["grep", "-E", "^(Cap|NoNewPrivs)", "/proc/self/status"]

    def sets(*command: str) -> dict[str, str]:
        out = subprocess.run([*confined, *command], capture_output=True, text=True, check=True,
                             env={**os.environ, **ENV}, timeout=60).stdout
        return dict(line.split(":\t") for line in out.splitlines())

    daemon = sets(*report)
    child = sets(sys.executable, "-m", "cauditd.dropcaps", *report)
    assert int(daemon["CapEff"], 16) != 0
    assert child["CapEff"] == child["CapPrm"] == child["CapInh"] == child["CapAmb"] == "0" * 16
    assert child["NoNewPrivs"] == "1"
