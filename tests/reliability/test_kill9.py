"""`kill -9` of the daemon in the middle of a finding storm, then a restart on the same state:
every finding the API had shown is still there, the alert outbox resumes (a slow local webhook
receiver), nothing is delivered twice under different idempotency keys, and the tc filters the
killed daemon left on the storm containers' veths are removed."""

from __future__ import annotations

import random
import sqlite3
import subprocess
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TEST_IMAGE
from tests.harness import DaemonProcess, WebhookReceiver, write_config
from tests.reliability import kernel

pytestmark = pytest.mark.usefixtures("ebpf", "docker")

STORM_CONTAINERS = 2
FILES_EACH = 400  # "Write below etc" findings per container, one per file name
RECEIVER_DELAY_S = 0.02  # ~50 deliveries/s: the outbox is behind when the daemon dies
KILL_AFTER = 150  # findings the API must have shown before the kill


@pytest.fixture
def network() -> Iterator[str]:
    name = f"cauditd-t-k9-{uuid.uuid4().hex[:8]}"
    subprocess.run(["docker", "network", "create", "--subnet",
                    f"10.216.{random.randint(1, 250)}.0/24", name], check=True,
                   capture_output=True)
    yield name
    subprocess.run(["docker", "network", "rm", name], capture_output=True)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver(delay_s=RECEIVER_DELAY_S)
    yield server
    server.close()


@pytest.mark.timeout(300)
def test_kill9_mid_storm_loses_and_repeats_nothing(
        tmp_path: Path, network: str, receiver: WebhookReceiver) -> None:
    config = write_config(  # no finding budget: the storm is one finding per file name
        tmp_path / "cauditd.toml", tmp_path / "state",
        '[rules]\nfinding_budget = 0\n'
        f'[[alerts.sinks]]\nname = "hook"\nkind = "webhook"\nurl = "{receiver.url}"\n'
        'min_priority = "warning"\nrate_limit = "none"\n')
    names = [f"cauditd-t-k9-{uuid.uuid4().hex[:6]}-{i}" for i in range(STORM_CONTAINERS)]
    first = DaemonProcess(config)
    second: DaemonProcess | None = None
    try:
        first.wait_ready()
        storm = f"i=0; while [ $i -lt {FILES_EACH} ]; do touch /etc/cdt$i; i=$((i+1)); done; " \
            "touch /tmp/storm-over; exec sleep 600"
        for name in names:
            subprocess.run(["docker", "run", "-d", "--name", name, "--network", network,
                            TEST_IMAGE, "sh", "-c", storm], check=True, capture_output=True)
        acknowledged = _wait_acknowledged(first, names, KILL_AFTER)
        delivered_before = len(receiver.received)
        first.kill()  # SIGKILL, mid-storm
        killed = first.proc.pid
        left = kernel.tc_filters(killed)
        assert left, "the kernel keeps a SIGKILLed daemon's filters (the storm's veths)"
        assert delivered_before < len(acknowledged), "the outbox should have been behind"

        second = DaemonProcess(config).wait_ready()
        assert kernel.tc_filters(killed) == {}  # removed at start
        kept = {f["id"] for f in _findings(second, names)}
        assert acknowledged <= kept, sorted(acknowledged - kept)[:20]
        _wait_delivered(second, receiver, names)
        _assert_no_duplicates(receiver.received)
        assert len(receiver.received) > delivered_before  # the outbox resumed
    finally:
        first.kill()
        if second is not None:
            assert second.stop() == 0
        subprocess.run(["docker", "rm", "-f", *names], capture_output=True, timeout=120)
    with sqlite3.connect(tmp_path / "state" / "findings.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def _findings(daemon: DaemonProcess, names: list[str]) -> list[dict[str, Any]]:
    """Every finding about the storm containers, all pages."""
    found: list[dict[str, Any]] = []
    for name in names:
        cursor = ""
        while True:
            page = daemon.get(f"/v1/findings?container={name}&limit=1000{cursor}")
            found += page["findings"]
            if not page.get("next_cursor"):
                break
            cursor = f"&cursor={page['next_cursor']}"
    return found


def _wait_acknowledged(daemon: DaemonProcess, names: list[str], at_least: int) -> set[int]:
    deadline = time.monotonic() + 60
    while True:
        ids = {f["id"] for f in _findings(daemon, names)}
        if len(ids) >= at_least:
            return ids
        assert time.monotonic() < deadline, f"only {len(ids)} findings of the storm"
        time.sleep(0.1)


def _delivered_ids(received: list[tuple[dict[str, str], Any]]) -> dict[int, set[str]]:
    """Finding id -> the idempotency keys it was delivered under (alone, or in a summary)."""
    keys: dict[int, set[str]] = defaultdict(set)
    for headers, body in received:
        fields = body.get("output_fields") or {}
        ids = fields.get("summary.finding_ids") or [body.get("id")]
        for finding_id in ids:
            keys[int(finding_id)].add(headers["Idempotency-Key"])
    return keys


def _storm_over(names: list[str]) -> bool:
    return all(subprocess.run(["docker", "exec", name, "test", "-e", "/tmp/storm-over"],
                              capture_output=True).returncode == 0 for name in names)


def _wait_delivered(daemon: DaemonProcess, receiver: WebhookReceiver, names: list[str]) -> None:
    """Every finding of the storm (acknowledged before the kill or made after it; what the
    storm did while no daemon ran is not seen) reaches the receiver, once the storm is over."""
    deadline = time.monotonic() + 120
    while True:
        over = _storm_over(names)
        wanted = {f["id"] for f in _findings(daemon, names)}
        missing = wanted - set(_delivered_ids(receiver.received))
        if over and not missing:
            return
        assert time.monotonic() < deadline, (
            f"{len(missing)} of {len(wanted)} findings never delivered; alerts: "
            f"{daemon.get('/v1/alerts')}")
        time.sleep(0.5)


def _assert_no_duplicates(received: list[tuple[dict[str, str], Any]]) -> None:
    """At least once, but a repeat always carries the first delivery's idempotency key: each
    finding under one key, and each key always the same findings."""
    per_finding = _delivered_ids(received)
    assert {i: k for i, k in per_finding.items() if len(k) > 1} == {}
    contents: dict[str, set[str]] = defaultdict(set)
    for headers, body in received:
        fields = body.get("output_fields") or {}
        contents[headers["Idempotency-Key"]].add(
            str(fields.get("summary.finding_ids") or body.get("id")))
    assert {k: v for k, v in contents.items() if len(v) > 1} == {}
