"""FindingStore on a real SQLite file: ids, batching, hooks, queries, retention, durability."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cauditd.config import StoreConfig
from cauditd.findings import Finding, Priority
from cauditd.store import GAP, FindingFilter, FindingStore, decode_cursor, encode_cursor
from tests.conftest import REPO
from tests.fakes import FULL_ID_B, make_finding


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[FindingStore]:
    s = FindingStore(tmp_path / "findings.db", StoreConfig(batch_ms=20))
    await s.start()
    yield s
    await s.stop()


def db_ids(path: Path) -> list[int]:
    with sqlite3.connect(path) as conn:
        return [r[0] for r in conn.execute("SELECT id FROM findings ORDER BY id")]


async def test_add_assigns_ids_at_once_and_stop_flushes(tmp_path: Path) -> None:
    store = FindingStore(tmp_path / "f.db", StoreConfig(batch_ms=60_000))
    await store.start()
    ids = [store.add(make_finding()).id for _ in range(50)]
    assert ids == list(range(1, 51))
    await store.stop()  # a minute-long batch window: only stop writes all but the first
    assert db_ids(tmp_path / "f.db") == ids


async def test_a_lone_finding_is_written_at_once_and_a_burst_in_batches(tmp_path: Path) -> None:
    """The first finding after a quiet spell does not wait for the batch window (a lone
    detection reaches the API and the alerts at once); those right behind it do."""
    store = FindingStore(tmp_path / "f.db", StoreConfig(batch_ms=60_000))
    await store.start()
    first = store.add(make_finding()).id
    for _ in range(100):
        if db_ids(tmp_path / "f.db") == [first]:
            break
        await asyncio.sleep(0.05)
    assert db_ids(tmp_path / "f.db") == [first]
    second = store.add(make_finding()).id  # a batch began less than a minute ago: it waits
    await asyncio.sleep(0.5)
    assert db_ids(tmp_path / "f.db") == [first]
    await store.stop()
    assert db_ids(tmp_path / "f.db") == [first, second]


async def test_updates_of_one_finding_in_a_batch_are_written_once_as_the_last_has_it(
        tmp_path: Path) -> None:
    """A finding repeated by every event of a loop is updated once per event batch; the
    store's batch writes it once, with its last count."""
    store = FindingStore(tmp_path / "f.db", StoreConfig(batch_ms=60_000))
    written: list[int] = []
    write_batch = store._write_batch

    def counting(conn: sqlite3.Connection, adds: list[Any], updates: list[Any]) -> Any:
        written.extend(u.id for u in updates)
        return write_batch(conn, adds, updates)

    store._write_batch = counting  # type: ignore[method-assign]
    await store.start()
    first, other = store.add(make_finding()), store.add(make_finding(rule="Other"))
    for count in range(2, 52):
        store.update(dataclasses.replace(first, count=count))
    store.update(dataclasses.replace(other, count=2))
    await store.stop()
    assert sorted(written) == [first.id, other.id]
    with sqlite3.connect(tmp_path / "f.db") as conn:
        counts = dict(conn.execute("SELECT id, count FROM findings").fetchall())
    assert counts == {first.id: 51, other.id: 2}


async def test_ids_continue_after_restart(tmp_path: Path) -> None:
    for expected_first in (1, 4):
        store = FindingStore(tmp_path / "f.db", StoreConfig())
        await store.start()
        assert store.add(make_finding()).id == expected_first
        store.add(make_finding())
        store.add(make_finding())
        await store.stop()


async def test_roundtrip_keeps_the_falco_shape(store: FindingStore) -> None:
    finding = store.add(make_finding(priority=Priority.CRITICAL, tags=("a", "b")))
    await store.flush()
    got = await store.get(finding.id or 0)
    assert got is not None
    assert got.to_json() == finding.to_json()
    assert await store.get(999) is None


async def test_update_writes_count_and_last_time(store: FindingStore) -> None:
    finding = store.add(make_finding())
    finding.count = 7
    finding.last_time_ns = finding.time_ns + 5_000_000_000
    store.update(finding)
    await store.flush()
    got = await store.get(finding.id or 0)
    assert got is not None and got.count == 7 and got.last_time_ns == finding.last_time_ns


async def test_write_hook_runs_in_the_batch_transaction(store: FindingStore) -> None:
    store.add_schema("CREATE TABLE IF NOT EXISTS outbox (finding_id INTEGER)")
    seen: list[list[int]] = []

    def hook(conn: sqlite3.Connection, findings: list[Finding]) -> None:
        assert conn.in_transaction
        seen.append([f.id or 0 for f in findings])
        conn.executemany("INSERT INTO outbox VALUES (?)", [(f.id,) for f in findings])

    store.add_write_hook(hook)
    added = [store.add(make_finding()).id for _ in range(5)]
    await store.flush()
    rows = await store.run_in_writer(
        lambda c: [r[0] for r in c.execute("SELECT finding_id FROM outbox ORDER BY 1")]
    )
    assert rows == added and [i for batch in seen for i in batch] == added


async def test_failing_hook_loses_its_rows_not_the_findings(store: FindingStore) -> None:
    def broken(conn: sqlite3.Connection, findings: list[Finding]) -> None:
        raise RuntimeError("sink bug")

    store.add_write_hook(broken)
    finding = store.add(make_finding())
    await store.flush()
    assert await store.get(finding.id or 0) is not None


async def test_run_in_writer_returns_and_raises(store: FindingStore) -> None:
    assert await store.run_in_writer(lambda c: c.execute("SELECT 41 + 1").fetchone()[0]) == 42
    with pytest.raises(sqlite3.OperationalError):
        await store.run_in_writer(lambda c: c.execute("SELECT * FROM no_such_table"))


@pytest.mark.parametrize(
    ("filters", "expected_rules"),
    [
        (FindingFilter(), ["r4", "r3", "r2", "r1"]),
        (FindingFilter(rules=("r1", "r3")), ["r3", "r1"]),
        (FindingFilter(min_priority=Priority.ERROR), ["r2"]),
        (FindingFilter(tags=("net",)), ["r3"]),
        (FindingFilter(containers=(FULL_ID_B,)), ["r4"]),
        (FindingFilter(containers=(FULL_ID_B[:12],)), ["r4"]),
        (FindingFilter(containers=("db",)), ["r4"]),
        (FindingFilter(sources=("network",)), ["r3"]),
        (FindingFilter(since_ns=2000), ["r4", "r3", "r2"]),
        (FindingFilter(until_ns=2000), ["r2", "r1"]),
        (FindingFilter(ascending=True), ["r1", "r2", "r3", "r4"]),
        (FindingFilter(after_id=2, ascending=True), ["r3", "r4"]),
    ],
)
async def test_query_filters(store: FindingStore, filters: FindingFilter,
                             expected_rules: list[str]) -> None:
    added = [
        store.add(make_finding("r1", time_ns=1000)),
        store.add(make_finding("r2", time_ns=2000, priority=Priority.CRITICAL)),
        store.add(make_finding("r3", time_ns=3000, tags=("net",), source="network")),
        store.add(make_finding("r4", time_ns=4000, full_id=FULL_ID_B, name="db")),
    ]
    await store.flush()
    found, _ = await store.query(filters)
    assert [f.rule for f in found] == expected_rules
    assert [f.rule for f in added if filters.matches(f)] == sorted(expected_rules)


async def test_keyset_pages(store: FindingStore) -> None:
    for _ in range(25):
        store.add(make_finding())
    await store.flush()
    seen: list[int] = []
    filters = FindingFilter(limit=10)
    while True:
        page, cursor = await store.query(filters)
        seen += [f.id or 0 for f in page]
        if cursor is None:
            break
        filters.before_id = decode_cursor(cursor)
    assert seen == list(range(25, 0, -1))


@pytest.mark.parametrize("bad", ["", "x", "Zm9vOjE", encode_cursor(5) + "A", "ZjE6LTE"])
def test_decode_cursor_rejects_foreign_text(bad: str) -> None:
    with pytest.raises(ValueError, match="cursor"):
        decode_cursor(bad)


async def test_retention_by_count_and_age(tmp_path: Path) -> None:
    store = FindingStore(tmp_path / "f.db", StoreConfig(max_findings=1200, retention_days=1))
    await store.start()
    old = time.time_ns() - 3 * 86400 * 10**9
    for _ in range(300):
        store.add(make_finding("old", time_ns=old))
    for _ in range(1500):
        store.add(make_finding("new"))
    await store.flush()
    deleted = await store.apply_retention()
    await store.stop()
    ids = db_ids(tmp_path / "f.db")
    assert deleted == 600
    assert ids == list(range(601, 1801))


async def test_subscription_gap_after_overflow(store: FindingStore) -> None:
    sub = store.subscribe(maxsize=3)
    added = [store.add(make_finding()).id for _ in range(5)]
    got = [await anext(sub) for _ in range(4)]
    assert [f.id for f in got[:3]] == added[:3]  # type: ignore[union-attr]
    assert got[3] is GAP
    later = store.add(make_finding())
    assert await anext(sub) is later
    sub.close()
    with pytest.raises(StopAsyncIteration):
        await anext(sub)


async def test_add_after_stop_raises(tmp_path: Path) -> None:
    store = FindingStore(tmp_path / "f.db", StoreConfig())
    await store.start()
    await store.stop()
    with pytest.raises(RuntimeError):
        store.add(make_finding())


KILLED_WRITER = textwrap.dedent("""
    import asyncio, signal, sys
    from pathlib import Path
    from cauditd.config import StoreConfig
    from cauditd.store import FindingStore
    from tests.fakes import make_finding

    async def main():
        store = FindingStore(Path(sys.argv[1]), StoreConfig(batch_ms=int(sys.argv[2])))
        await store.start()
        stopping = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
        n = 0
        while not stopping.is_set():
            for _ in range(50):
                n += 1
                store.add(make_finding(f"rule-{n}"))
            if n % 1000 == 0:
                await store.flush()
                print(n, flush=True)  # everything up to n is committed
            await asyncio.sleep(0)
        await store.stop()
        print("stopped", store.last_id, flush=True)

    asyncio.run(main())
""")


def run_and_signal(path: Path, signum: int) -> tuple[int, list[str]]:
    """Run the writer until 5000 findings are committed, signal it; (committed, last words)."""
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'daemon'}:{REPO}"}
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(path), "200"],
                            stdout=subprocess.PIPE, text=True, env=env, cwd=REPO)
    assert proc.stdout is not None
    committed = 0
    for line in proc.stdout:
        committed = int(line)
        if committed >= 5000:
            break
    proc.send_signal(signum)
    tail = proc.stdout.read().split()
    proc.wait()
    return committed, tail


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM])
async def test_killed_writer_leaves_a_readable_db(tmp_path: Path, signum: int) -> None:
    """SIGKILL: at most the last batch window is lost. SIGTERM (stop): nothing is."""
    path = tmp_path / "findings.db"
    committed, tail = run_and_signal(path, signum)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        ids = [r[0] for r in conn.execute("SELECT id FROM findings ORDER BY id")]
    # Every id reported committed is there, and what is there is a gap-free prefix:
    # only the tail (the last batch window) can be missing.
    assert ids[:committed] == list(range(1, committed + 1))
    assert ids == list(range(1, len(ids) + 1))
    if signum == signal.SIGTERM:
        assert tail[-2] == "stopped" and len(ids) == int(tail[-1])
    # And the store opens it again and continues the ids.
    store = FindingStore(path, StoreConfig())
    await store.start()
    assert store.add(make_finding()).id == len(ids) + 1
    await store.stop()
