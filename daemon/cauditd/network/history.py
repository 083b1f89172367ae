"""Ended flows and DNS records in the daemon's SQLite database (the findings store), written in
batches at each flow scrape, kept by age and count, read back when memory no longer holds them.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS net_flows (
    id INTEGER PRIMARY KEY,
    time_ns INTEGER NOT NULL,
    container_id TEXT NOT NULL,
    container_name TEXT NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS net_flows_time ON net_flows(time_ns);
CREATE TABLE IF NOT EXISTS net_dns (
    id INTEGER PRIMARY KEY,
    time_ns INTEGER NOT NULL,
    container_id TEXT NOT NULL,
    container_name TEXT NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS net_dns_time ON net_dns(time_ns);
"""
TABLES = ("net_flows", "net_dns")
RETENTION_EVERY_S = 60.0
MAX_PENDING = 50_000  # rows per table waiting for the next flush; more are dropped and counted
SCAN_FACTOR = 50  # rows read per requested row at most, when filters are not in SQL


_compact = json.JSONEncoder(separators=(",", ":")).encode  # one encoder, not one per row


class NetworkHistory:
    """The flow and DNS tables of a FindingStore; `add_*` on the loop, `flush()` at each scrape.

    Reads (`flows`, `dns`) are synchronous on a read-only connection of their own: the API's
    NetworkView is synchronous, and an indexed, LIMITed read of a WAL database takes a few ms.
    """

    def __init__(self, store: Any, *, max_rows: int, max_age_s: float) -> None:
        self._store = store
        self._max_rows = max_rows
        self._max_age_ns = int(max_age_s * 1e9)
        self._pending: dict[str, list[tuple[int, str, str, str]]] = {t: [] for t in TABLES}
        self._reader: sqlite3.Connection | None = None
        self._last_retention = time.monotonic()
        self.written = dict.fromkeys(TABLES, 0)
        self.dropped = dict.fromkeys(TABLES, 0)
        self.write_errors = 0
        store.add_schema(SCHEMA)

    def add_flow(self, doc: dict[str, Any]) -> None:
        self._add("net_flows", doc["last_ns"], doc)

    def add_dns(self, doc: dict[str, Any]) -> None:
        self._add("net_dns", doc["time_ns"], doc)

    def _add(self, table: str, time_ns: int, doc: dict[str, Any]) -> None:
        pending = self._pending[table]
        if len(pending) >= min(self._max_rows, MAX_PENDING):  # a flood, or a store that stopped
            self.dropped[table] += 1  # writing, does not grow memory
            return
        pending.append((time_ns, doc["container_id"], doc["container_name"], _compact(doc)))

    async def flush(self) -> None:
        """Write what was added since the last flush (one writer transaction); retention once a
        minute."""
        batches = {t: rows for t, rows in self._pending.items() if rows}
        self._pending = {t: [] for t in TABLES}
        retention = time.monotonic() - self._last_retention >= RETENTION_EVERY_S
        if not batches and not retention:
            return
        if retention:
            self._last_retention = time.monotonic()
        try:
            await self._store.run_in_writer(lambda conn: self._write(conn, batches, retention))
        except (sqlite3.Error, RuntimeError) as exc:
            self.write_errors += 1
            log.warning("network: writing %d flow/DNS rows failed: %s",
                        sum(map(len, batches.values())), exc)

    def _write(self, conn: sqlite3.Connection, batches: dict[str, list[Any]],
               retention: bool) -> None:
        for table, rows in batches.items():
            conn.executemany(f"INSERT INTO {table} (time_ns, container_id, container_name, doc)"
                             " VALUES (?, ?, ?, ?)", rows)
            self.written[table] += len(rows)
        if retention:
            self.apply_retention(conn)

    def apply_retention(self, conn: sqlite3.Connection) -> None:
        """Delete rows older than the age limit and beyond the newest `max_rows` (writer thread)."""
        cutoff = time.time_ns() - self._max_age_ns
        for table in TABLES:
            conn.execute(f"DELETE FROM {table} WHERE time_ns < ?", (cutoff,))
            row = conn.execute(f"SELECT id FROM {table} ORDER BY id DESC LIMIT 1 OFFSET ?",
                               (self._max_rows,)).fetchone()
            if row is not None:
                conn.execute(f"DELETE FROM {table} WHERE id <= ?", (row[0],))

    def query(self, table: str, match: Callable[[dict[str, Any]], bool], *, limit: int,
              since_ns: int | None, before_ns: int | None) -> list[dict[str, Any]]:
        """Rows of `table` (newest first) with time in [since_ns, before_ns) that `match`."""
        conn = self._connection()
        if conn is None:
            return []
        terms, args = [], []
        for term, value in (("time_ns >= ?", since_ns), ("time_ns < ?", before_ns)):
            if value is not None:
                terms.append(term)
                args.append(value)
        where = (" WHERE " + " AND ".join(terms)) if terms else ""
        sql = f"SELECT doc FROM {table}{where} ORDER BY time_ns DESC LIMIT ?"
        try:
            rows = conn.execute(sql, [*args, limit * SCAN_FACTOR]).fetchall()
        except sqlite3.Error as exc:
            log.warning("network: reading %s failed: %s", table, exc)
            return []
        found: list[dict[str, Any]] = []
        for (text,) in rows:
            doc = json.loads(text)
            if match(doc):
                found.append(doc)
                if len(found) >= limit:
                    break
        return found

    def _connection(self) -> sqlite3.Connection | None:
        if self._reader is None:
            path = getattr(self._store, "path", None)
            if path is None or not path.exists():
                return None
            self._reader = sqlite3.connect(f"file:{path}?mode=ro", uri=True,
                                           check_same_thread=False)
            self._reader.execute("PRAGMA busy_timeout=1000")
        return self._reader

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
