"""Churn: 300 containers started and removed in waves, watched by the real daemon. Afterwards
nothing of them is left: no tc filter, no kernel cgroup_state entry, no registry or process
table entry; and each one's finding names it, the short-lived `--rm` ones included."""

from __future__ import annotations

import random
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.conftest import TEST_IMAGE
from tests.harness import DaemonProcess, write_config
from tests.reliability import kernel

pytestmark = pytest.mark.usefixtures("ebpf", "docker")
T = TypeVar("T")

WAVES = 10
LONG_PER_WAVE = 20  # attached to (their veths get our filters), then removed with `docker rm -f`
SHORT_PER_WAVE = 10  # `docker run --rm`: gone within a second
PARALLEL = 8
RULE = "Read sensitive file untrusted"
# cat is a child of sh (with a single command busybox sh would exec it as the entrypoint,
# which the rule leaves alone)
LONG = "cat /etc/shadow >/dev/null; sleep 3"
SHORT = "cat /etc/shadow >/dev/null; true"
GRACE_S = 40  # what the daemon may take to notice a container is gone and forget it


def _docker(*args: str, check: bool = True) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 or not check, done.stderr
    return done.stdout.strip()


def _until(daemon: DaemonProcess, check: Callable[[], T], what: str,
           done: Callable[[T], bool] = bool, timeout: float = GRACE_S) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last: {value!r}\n"
                                 + _diagnosis(daemon))
        time.sleep(0.5)


def _diagnosis(daemon: DaemonProcess) -> str:
    stats = daemon.get("/v1/stats")
    found = daemon.get(f"/v1/findings?rule={RULE.replace(' ', '%20')}&limit=1000")["findings"]
    unnamed = [f["container"]["id"] for f in found if not f["container"]["name"]]
    log = [line for line in daemon.lines if " DEBUG " not in line and "INFO" not in line]
    return (f"unnamed findings: {unnamed}\nstats: {stats['probes']} {stats['network']} "
            f"{stats['tables']}\nlog:\n" + "\n".join(log[-40:]))


@pytest.fixture
def network() -> Iterator[str]:
    name = f"cauditd-t-churn-{uuid.uuid4().hex[:8]}"
    for _ in range(20):  # a subnet no other network of this host has
        subnet = f"10.215.{random.randint(1, 250)}.0/24"
        created = subprocess.run(["docker", "network", "create", "--subnet", subnet, name],
                                 capture_output=True, text=True, timeout=120)
        if created.returncode == 0:
            break
        assert "overlaps" in created.stderr, created.stderr
    else:
        raise AssertionError("no free 10.215.x.0/24 subnet for the test's network")
    yield name
    # dockerd may keep a stale endpoint of a container removed while it started ("has active
    # endpoints" with none listed, until dockerd restarts): such a network stays behind, and
    # the subnet loop above steps around it on the next run.
    _docker("network", "rm", name, check=False)


@pytest.mark.timeout(900)
def test_churn_leaves_nothing_behind(tmp_path: Path, network: str) -> None:
    config = write_config(tmp_path / "cauditd.toml", tmp_path / "state")
    daemon = DaemonProcess(config)
    prefix = f"cauditd-t-ch{uuid.uuid4().hex[:4]}-"
    names: list[str] = []
    try:
        daemon.wait_ready()
        pid = daemon.proc.pid
        for wave in range(WAVES):
            names += _wave(prefix, wave, network)
        _until(daemon, lambda: set(names) - _named_findings(daemon, prefix),
               "a finding naming each container", done=lambda missing: not missing)
        _until(daemon, lambda: _ours(daemon.get("/v1/containers")["containers"], prefix),
               "the registry to forget the removed containers", done=lambda left: not left)
        _until(daemon, lambda: _stale(daemon, pid), "nothing stale in the daemon's tables",
               done=lambda stale: not any(stale.values()), timeout=3 * GRACE_S)
        assert daemon.proc.poll() is None
        assert not [line for line in daemon.lines if "Traceback" in line]
    finally:
        daemon.stop()
        subprocess.run(["docker", "rm", "-f", *names], capture_output=True, timeout=300)
    assert kernel.tc_filters(pid) == {}  # and none once it stopped


def _wave(prefix: str, wave: int, network: str) -> list[str]:
    """One wave: LONG_PER_WAVE detached containers and SHORT_PER_WAVE `--rm` ones, started
    PARALLEL at a time; the detached ones are removed once every one has run."""
    longs = [f"{prefix}{wave}-l{i}" for i in range(LONG_PER_WAVE)]
    shorts = [f"{prefix}{wave}-s{i}" for i in range(SHORT_PER_WAVE)]
    runs = [("-d", name, LONG) for name in longs] + [("--rm", name, SHORT) for name in shorts]
    with ThreadPoolExecutor(PARALLEL) as pool:
        list(pool.map(lambda run: _docker("run", run[0], "--name", run[1], "--network", network,
                                          TEST_IMAGE, "sh", "-c", run[2]), runs))
    time.sleep(1)  # let the network monitor attach to the last ones
    _docker("rm", "-f", *longs)
    return longs + shorts


def _ours(containers: list[dict[str, Any]], prefix: str) -> list[str]:
    return [c["name"] for c in containers if c["name"].startswith(prefix)]


def _named_findings(daemon: DaemonProcess, prefix: str) -> set[str]:
    """Names of the containers with a RULE finding that names them."""
    found = daemon.get(f"/v1/findings?rule={RULE.replace(' ', '%20')}&limit=1000")["findings"]
    return {f["container"]["name"] for f in found if f["container"]["name"].startswith(prefix)}


def _stale(daemon: DaemonProcess, pid: int) -> dict[str, int]:
    """What of the removed containers is still held:

    - tc filters of this daemon on interfaces other than attached containers' veths;
    - processes in the daemon's table whose container the registry no longer has;
    - kernel cgroup_state entries of cgroups that no longer exist, the registry's and the
      kernel's own IGNORED verdicts, beyond the time the daemon promises to forget them in
      (other engineers' containers come and go meanwhile: an entry must be gone by then, not
      at once).
    """
    stats = daemon.get("/v1/stats")
    filters = kernel.tc_filters(pid)
    extra_filters = sum(map(len, filters.values())) - 2 * stats["network"]["interfaces_attached"]
    processes = stats["tables"]["processes_of_gone_containers"]
    maps = kernel.daemon_maps(pid)
    gone = set(kernel.map_keys(maps["cgroup_state"])) - kernel.live_cgroup_ids()
    if gone:
        time.sleep(stats["tables"]["forgotten_within_s"] + 1)
        gone &= set(kernel.map_keys(maps["cgroup_state"]))
    return {"filters": extra_filters, "processes": processes, "cgroups": len(gone)}
