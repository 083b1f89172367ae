"""The state dir refuses writes (SQLite's own SQLITE_FULL here, from a page limit; a real full
tmpfs is tests/reliability/test_disk_full.py): findings are held in memory and still queryable,
alerts still go out from memory, /readyz-level `problem` says so; when writes are taken again
the held findings are written, no sink gets one twice, and the database is intact."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from cauditd.findings import Priority
from cauditd.store import FindingFilter
from tests.alerts.conftest import Daemon, eventually, finding, sink
from tests.alerts.services import ChatServices

BIG = "x" * 4000  # a few findings fill a page


async def test_findings_and_alerts_go_on_while_the_disk_refuses_writes(
    daemon_factory: Callable[..., Daemon],
) -> None:
    chat = ChatServices()
    await chat.start()
    daemon = daemon_factory([sink("hook", "webhook", chat.url("webhook"))])
    try:
        await daemon.start()
        store = daemon.store
        assert store is not None
        daemon.add(finding(output="before"))
        await eventually(lambda: len(chat.unique("webhook")) == 1, "the first alert")

        pages = await store.run_in_writer(lambda c: c.execute("PRAGMA page_count").fetchone()[0])
        await store.run_in_writer(lambda c: c.execute(f"PRAGMA max_page_count = {pages}"))
        held = daemon.add(*(finding(output=f"held {n} {BIG}", priority=Priority.CRITICAL)
                            for n in range(20)))
        await eventually(lambda: store.problem is not None, "the outage noticed")
        assert "refuses writes" in (store.problem or "")
        assert store.stats()["held_in_memory"] >= 1 and not store.stats()["writable"]
        await eventually(lambda: len(chat.unique("webhook")) == 21, "held findings alerted")
        found, _ = await store.query(FindingFilter(limit=100))
        assert {f.id for f in held} <= {f.id for f in found}, "held findings are queryable"

        await store.run_in_writer(lambda c: c.execute("PRAGMA max_page_count = 1073741823"))
        await eventually(lambda: store.problem is None, "writes taken again", limit_s=10)
        await store.flush()
        rows = await store.run_in_writer(
            lambda c: c.execute("SELECT COUNT(*) FROM findings").fetchone()[0])
        assert rows == 21
        assert store.stats()["written_after_outage"] >= 1 and store.stats()["outages"] == 1
        daemon.add(finding(output="after"))
        await eventually(lambda: len(chat.unique("webhook")) == 22, "alerts by the outbox again")
        assert daemon.status("hook")["queue_depth"] == 0
        assert len(chat.received) == len(chat.unique("webhook")), "nothing sent twice"
    finally:
        await daemon.stop()
        await chat.stop()
    check = sqlite3.connect(daemon.path).execute("PRAGMA integrity_check").fetchone()
    assert check == ("ok",)
