"""Drops: a tiny ring buffer drained slowly and flooded by a container loses events, and the
loss is counted (SyscallProbes.lost_total, cauditd_events_lost), logged as a warning and kept
as a "Syscall event drop" finding."""

from __future__ import annotations

import logging
import time
import uuid
from pathlib import Path

import pytest

from cauditd import metrics
from cauditd.store import FindingFilter
from tests.conftest import Containers, DaemonThread, daemon_config

pytestmark = pytest.mark.usefixtures("ebpf", "docker")


def test_a_flood_into_a_tiny_ring_buffer_is_counted_and_logged(
    tmp_path: Path, containers: Containers, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="cauditd.daemon")
    before = metrics.REGISTRY.get_sample_value("cauditd_events_lost_total", {"probe": "syscall"})
    runner = DaemonThread(daemon_config(tmp_path, ringbuf_pages=1, poll_interval_ms=200))
    runner.start()
    try:
        name = f"cauditd-t-{uuid.uuid4().hex[:10]}"
        result = containers.run("bench_loop", "open", "1", name=name, options=("--network", "none"))
        assert result.returncode == 0, result.stderr
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "lost" not in caplog.text:
            time.sleep(0.1)
        drops = FindingFilter(rules=("Syscall event drop",))
        found = []
        while time.monotonic() < deadline and not found:
            found, _ = runner.run(runner.daemon.store.query(drops))
            time.sleep(0.1)
    finally:
        runner.stop()
    lost = runner.daemon.probes.lost_total  # stop() polls a last time
    assert lost > 1000  # ~1 s of open+close at >100k/s into a 4 KiB buffer drained 5x a second
    after = metrics.REGISTRY.get_sample_value("cauditd_events_lost_total", {"probe": "syscall"})
    assert after - (before or 0) == lost
    assert "syscall probes lost" in caplog.text
    assert len(found) == 1, "drops within a minute are one finding"
    assert found[0].priority.label == "Warning"
    assert found[0].output_fields["evt.lost"] > 0
