"""Flows and DNS records to JetStream (fleet.publish_flows / publish_dns), from the network
history tables, which are their durable outbox: a cursor per kind, kept in the same database,
moves past a window of rows only once JetStream has acked every one of them.

Unlike findings, records go WINDOW publishes at a time (a host makes hundreds per second, and
one in flight caps it at one per ack round trip): they are stored in id order unless a publish
fails and its retry lands after later ones; each record carries its own time. Rows retention
deletes before they could be published (a broker away longer than network.history_days, or
more rows than history_max_rows) are not published.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from dataclasses import dataclass

from cauditd.alerts.delivery import AlertStore
from cauditd.fleet.publisher import JetStreamSink
from cauditd.fleet.subjects import Subjects, message_id

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS fleet_cursors (
    kind TEXT PRIMARY KEY,
    last_id INTEGER NOT NULL,
    published INTEGER NOT NULL DEFAULT 0
);
"""
TABLES = {"flow": "net_flows", "dns": "net_dns"}
READ_BATCH = 512
WINDOW = 64  # publishes in flight per kind
IDLE_S = 1.0


@dataclass(frozen=True, slots=True)
class RecordRow:
    id: int
    time_ns: int
    doc: str


def _cursor(conn: sqlite3.Connection, kind: str) -> int:
    """The last published id, back to 0 when the table's newest id is below it: retention took
    the newest rows (by age: so every older one too) and SQLite numbers new rows from the
    largest id left, so every row now in the table came after and none was published."""
    row = conn.execute("SELECT last_id FROM fleet_cursors WHERE kind = ?", (kind,)).fetchone()
    last = int(row[0]) if row else 0
    newest = conn.execute(f"SELECT MAX(id) FROM {TABLES[kind]}").fetchone()[0] or 0
    if row is None:
        conn.execute("INSERT INTO fleet_cursors (kind, last_id) VALUES (?, ?)", (kind, 0))
    elif newest < last:
        conn.execute("UPDATE fleet_cursors SET last_id = 0 WHERE kind = ?", (kind,))
        last = 0
    return last


def pending(conn: sqlite3.Connection, kind: str, limit: int = READ_BATCH) -> list[RecordRow]:
    after = _cursor(conn, kind)
    rows = conn.execute(f"SELECT id, time_ns, doc FROM {TABLES[kind]} WHERE id > ? ORDER BY id"
                        " LIMIT ?", (after, limit)).fetchall()
    return [RecordRow(*row) for row in rows]


def advance(conn: sqlite3.Connection, kind: str, last_id: int, count: int) -> None:
    conn.execute("UPDATE fleet_cursors SET last_id = MAX(last_id, ?), published = published + ?"
                 " WHERE kind = ?", (last_id, count, kind))


class RecordPublisher:
    """Publishes one kind ("flow" or "dns") of network history rows, at least once."""

    def __init__(self, kind: str, store: AlertStore, sink: JetStreamSink,
                 subjects: Subjects, retry_max_s: float) -> None:
        self.kind = kind
        self.store = store
        self.sink = sink
        self.subject = subjects.record(sink.host, kind)
        self.retry_max_s = retry_max_s
        self.published = 0

    async def run(self) -> None:
        """Until cancelled; stops (with an error) when the network history is off."""
        while True:
            try:
                rows = await self.store.run_in_writer(lambda c: pending(c, self.kind))
            except sqlite3.OperationalError as exc:
                log.error("fleet: cannot publish %s records: %s (is network.history off?)",
                          self.kind, exc)
                return
            for start in range(0, len(rows), WINDOW):
                window = rows[start:start + WINDOW]
                await asyncio.gather(*(self._publish_row(row) for row in window))
                await self._advance(window)
            if not rows:
                await asyncio.sleep(IDLE_S)

    async def _publish_row(self, row: RecordRow) -> None:
        """Publish until acked (or refused for good: logged, and the cursor moves past it)."""
        try:
            document = json.loads(row.doc)
        except ValueError:
            document = {"unreadable": row.doc[:200]}
        document["hostname"] = self.sink.host
        payload = json.dumps(document, separators=(",", ":")).encode()
        key = message_id(self.sink.host, self.kind, f"{row.id}-{row.time_ns}")
        delay = 0.5
        while True:
            outcome = await self.sink.publish(self.subject, payload, key)
            if outcome.ok or not outcome.retry:
                if not outcome.ok:
                    log.warning("fleet: %s record %d dropped: %s", self.kind, row.id,
                                outcome.error)
                return
            await asyncio.sleep(delay)
            delay = min(self.retry_max_s, delay * 2)

    async def _advance(self, rows: list[RecordRow]) -> None:
        last, count, kind = rows[-1].id, len(rows), self.kind
        await self.store.run_in_writer(lambda c: advance(c, kind, last, count))
        self.published += count
