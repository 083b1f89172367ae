"""The unit, run for real: systemd/cauditd.service as `scripts/install.sh` (`make install`) lays
it out, started by systemd as PID 1 of an nspawn machine (tests/reliability/machine.py), with all
its hardening. It must reach READY=1, detect a container's read of /etc/shadow (the container runs
on the host's engine), keep its capabilities from the exec sink's program, survive a reload and a
restart, and be restarted by the watchdog when it hangs.

What the machine changes in the installed config, and why: the API port (a free one, not 7411);
probes.cgroup_root (the machine's own /sys/fs/cgroup is its cgroup namespace, so the host's tree
is bound elsewhere); network off (the machine's PID namespace hides host PIDs, so veth peers
cannot be found through /proc/<pid>/ns/net; a unit on a real host runs in the host's PID
namespace); an exec sink for this test's container.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.conftest import Containers, unavailable
from tests.reliability.machine import HOST_CGROUP2, SOURCE, WHEELS, Machine, build_root, wheelhouse
from tests.reliability.unitfile import confinement, values

# The first test also builds the Debian root when it is not cached (a few minutes, once).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]
PREFIX = "/opt/cauditd"
CONFIG = "/etc/cauditd/cauditd.toml"
CAPS_REPORT = "/var/lib/cauditd/exec-sink-capabilities"
RELOAD_RULE = "Unit test reload marker"
TOOLS = ("debootstrap", "systemd-nspawn", "nsenter")


@dataclass
class Installed:
    """The machine with cauditd installed and started, and how to reach its API from here."""

    machine: Machine
    url: str
    read_token: str
    container: str  # the name this module's container gets (the exec sink routes on it)

    def api(self, path: str, token: str | None = "read", method: str = "GET") -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.read_token}"} if token == "read" else {}
        request = urllib.request.Request(self.url + path, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                return resp.status, json.load(resp)
        except urllib.error.HTTPError as exc:
            return exc.code, json.load(exc)

    def service(self) -> dict[str, str]:
        return self.machine.show("cauditd", "MainPID", "NRestarts", "ActiveState", "SubState",
                                 "StatusErrno", "Result")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def eventually(check: Callable[[], Any], what: str, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError(f"never happened within {timeout:g}s: {what}")


def machine_config(installed_text: str, port: int, container: str) -> str:
    """The installed config with the machine's differences (module docstring)."""
    default = 'listen = "127.0.0.1:7411"'
    assert default in installed_text, "the installed config's listen line changed"
    report = f"grep -E '^(Cap|NoNewPrivs)' /proc/self/status > {CAPS_REPORT}"
    return installed_text.replace(default, f'listen = "127.0.0.1:{port}"') + f"""
[probes]
cgroup_root = "{HOST_CGROUP2}"

[network]
enabled = false

[[alerts.sinks]]
name = "capabilities"
kind = "exec"
command = ["/bin/sh", "-c", "{report}"]
containers = ["{container}"]
min_priority = "debug"
rate_limit = ""
"""


@pytest.fixture(scope="module")
def installed(ebpf: None, docker: None) -> Iterator[Installed]:
    for tool in TOOLS:
        if shutil.which(tool) is None:
            unavailable(f"{tool} missing (scripts/bootstrap.sh --test installs it)")
    machine = Machine(build_root(), f"cauditd-t-{uuid.uuid4().hex[:8]}",
                      confinement().capabilities, wheelhouse())
    machine.start()
    try:
        machine.run("bash", f"{SOURCE}/scripts/install.sh", timeout=600, env={
            "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": WHEELS, "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        })
        port, container = free_port(), f"cauditd-t-{uuid.uuid4().hex[:10]}"
        machine.write(CONFIG, machine_config(machine.read(CONFIG), port, container))
        machine.systemctl("enable", "--now", "cauditd")
        read_token = machine.read("/etc/cauditd/read.token").strip()
        yield Installed(machine, f"http://127.0.0.1:{port}", read_token, container)
    except BaseException:
        print(machine.journal("cauditd")[-5000:] if machine.leader else machine.log())
        raise
    finally:
        machine.stop()


def test_reaches_ready_confined_as_the_unit_says(installed: Installed) -> None:
    """Type=notify: `systemctl start` returned once the daemon sent READY=1."""
    service = installed.service()
    assert (service["ActiveState"], service["SubState"]) == ("active", "running"), service
    assert "cauditd ready" in installed.machine.journal("cauditd")
    status = installed.machine.read(f"/proc/{service['MainPID']}/status")
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    assert fields["Seccomp"] == "2" and fields["NoNewPrivs"] == "1"
    assert int(fields["CapEff"], 16).bit_count() == len(confinement().capabilities)


def test_locked_by_default(installed: Installed) -> None:
    machine = installed.machine
    for role in ("read", "admin"):
        assert machine.run("stat", "-c", "%a %U", f"/etc/cauditd/{role}.token").stdout == (
            "600 root\n"
        )
    assert machine.run("stat", "-c", "%a", "/run/cauditd/api.sock").stdout == "600\n"
    assert installed.api("/v1/stats", token=None)[0] == 401
    status, stats = installed.api("/v1/stats")
    assert status == 200
    assert stats["probes"]["syscall"]["decoder"] == "compiled"  # install.sh built it (gcc)
    assert stats["probes"]["syscall"]["kernel_structs"] is True  # BTF read under its sandbox
    cauditctl = f"{PREFIX}/venv/bin/cauditctl"
    assert "daemon: ready" in machine.run(cauditctl, "status").stdout
    assert installed.api("/v1/rules/reload", method="POST")[0] == 403
    assert "rules reloaded" in machine.run(cauditctl, "rules", "reload").stdout


def test_detects_a_containers_shadow_read(installed: Installed, containers: Containers) -> None:
    name = installed.container
    started = containers.run("sleep", "300", name=name, detach=True,
                             options=("--network", "none"))
    assert started.returncode == 0, started.stderr
    assert containers.exec(name, "cat", "/etc/shadow").returncode == 0

    def found() -> list[dict[str, Any]]:
        findings = installed.api(f"/v1/findings?container={name}")[1]["findings"]
        return [f for f in findings if f["rule"] == "Read sensitive file untrusted"]

    finding = eventually(found, "a finding for the shadow read", 30)[0]
    assert finding["output_fields"]["fd.name"] == "/etc/shadow"
    assert finding["container"]["name"] == name


def test_exec_sink_program_has_no_capabilities(installed: Installed) -> None:
    report = eventually(lambda: installed.machine.run("cat", CAPS_REPORT, check=False).stdout,
                        "the exec sink's program to run", 30)
    sets = dict(line.split(":\t") for line in report.splitlines())
    assert sets["CapEff"] == sets["CapPrm"] == sets["CapAmb"] == "0" * 16, sets
    assert sets["NoNewPrivs"] == "1"


def test_survives_reload(installed: Installed) -> None:
    machine, before = installed.machine, installed.service()
    rule = (f'[[rules]]\nname = "{RELOAD_RULE}"\ndesc = "x"\n'
            'condition = "spawned_process and proc.name = cauditd-unit-test-marker"\n'
            'output = "x"\npriority = "debug"\n')
    machine.write("/etc/cauditd/rules.d/unit-test.toml", rule)
    machine.systemctl("reload", "cauditd")
    names = lambda: [r["name"] for r in installed.api("/v1/rules")[1]["rules"]]  # noqa: E731
    eventually(lambda: RELOAD_RULE in names(), "the reloaded rule", 30)
    after = installed.service()
    assert after["MainPID"] == before["MainPID"] and after["ActiveState"] == "active"


def test_survives_restart_and_keeps_findings(installed: Installed) -> None:
    before = installed.service()
    installed.machine.systemctl("restart", "cauditd")
    after = installed.service()
    assert after["MainPID"] != before["MainPID"]
    assert (after["ActiveState"], after["SubState"]) == ("active", "running"), after
    findings = installed.api(f"/v1/findings?container={installed.container}")[1]["findings"]
    assert findings, "the finding from before the restart is gone"


def test_watchdog_restarts_a_hung_daemon(installed: Installed) -> None:
    """SIGSTOP: no more WATCHDOG=1; systemd aborts it after WatchdogSec and restarts it."""
    machine, before = installed.machine, installed.service()
    watchdog = re.fullmatch(r"(\d+)s?", values("WatchdogSec")[-1])
    assert watchdog, "the unit's WatchdogSec is not in seconds"
    watchdog_s = int(watchdog.group(1))
    machine.run("kill", "-STOP", before["MainPID"])

    def restarted() -> dict[str, str] | None:
        now = installed.service()
        running = (now["ActiveState"], now["SubState"]) == ("active", "running")
        return now if running and now["MainPID"] != before["MainPID"] else None

    after = eventually(restarted, "a restart by the watchdog", watchdog_s + 90)
    assert int(after["NRestarts"]) == int(before["NRestarts"]) + 1
    assert "watchdog" in installed.machine.journal("cauditd").lower()
    assert installed.api("/readyz", token=None)[0] == 200
