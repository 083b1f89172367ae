"""A sink that fails for ever never grows the outbox without bound: past max_queue its oldest
rows below Critical leave the queue (counted, logged; the findings stay in the store), and only
its newest FAILED_KEPT failed rows are kept."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from cauditd.alerts import AlertDispatcher, outbox
from cauditd.config import AlertsConfig, StoreConfig
from cauditd.findings import Priority
from cauditd.store import FindingFilter, FindingStore
from tests.alerts.conftest import finding, sink


async def test_a_queue_over_its_cap_drops_its_oldest_findings_below_critical(
    tmp_path: Path,
) -> None:
    store = FindingStore(tmp_path / "findings.db", StoreConfig(batch_ms=1))
    config = AlertsConfig(sinks=[sink("down", "webhook", "http://127.0.0.1:9/", max_queue=20)])
    dispatcher = AlertDispatcher(config, store)
    dispatcher.register()
    await store.start()  # the workers are not started: nothing is delivered, the queue grows
    try:
        critical_ids = []
        for n in range(100):
            severe = n % 10 == 3
            added = store.add(finding(priority=Priority.CRITICAL if severe else Priority.WARNING))
            if severe:
                critical_ids.append(added.id)
            if n % 7 == 0:
                await store.flush()  # several write batches, several trims
        await store.flush()
        rows = await store.run_in_writer(lambda c: outbox.pending(c, "down", limit=1000))
        stored, _ = await store.query(FindingFilter(limit=1000))
    finally:
        await store.stop()
    worker = dispatcher.workers["down"]
    assert len(rows) <= 20 and worker.depth == len(rows)
    assert {r.finding.id for r in rows} >= set(critical_ids)
    assert worker.counters_dropped == 100 - len(rows) == worker.status()["dropped"]
    assert len(stored) == 100


def test_only_the_newest_failed_rows_are_kept(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "outbox.db", isolation_level=None)
    conn.executescript(outbox.SCHEMA)
    entries = []
    for n in range(12):
        f = finding()
        f.id = n + 1
        entries.append(("chat", f))
    outbox.enqueue(conn, entries, time.time_ns())
    seqs = [row.seq for row in outbox.pending(conn, "chat", limit=100)]
    outbox.fail(conn, "chat", seqs, "HTTP 404", time.time_ns())
    assert outbox.prune_failed(conn, "chat", keep=5) == 7
    assert [row.seq for row, _ in outbox.failed(conn, "chat")] == seqs[-5:][::-1]
