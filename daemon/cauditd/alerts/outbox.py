"""The durable alert outbox: one row per (sink, finding) in the findings store's SQLite database.

Rows are inserted by the store's write hook in the transaction that stores the findings, so a
finding the store kept is a finding every interested sink will see. Delivered rows are deleted;
permanently failed rows stay (state 'failed') for inspection, the newest FAILED_KEPT per sink.
`batch` is set when rows are bundled into one summary message, so a retried summary covers
exactly the same findings. A sink that fails for ever holds at most its `max_queue` rows: past
it the oldest rows below Critical leave its queue first (`trim`); the findings stay in the store.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from cauditd.findings import Finding, Priority

FAILED_KEPT = 1000  # failed rows kept per sink for inspection (GET /v1/alerts), newest first
_SEVERE = tuple(p.label for p in Priority if p <= Priority.CRITICAL)

SCHEMA = """
CREATE TABLE IF NOT EXISTS alert_outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    sink TEXT NOT NULL,
    finding_id INTEGER NOT NULL,
    finding TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'failed')),
    batch INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    queued_ns INTEGER NOT NULL,
    last_error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS alert_outbox_by_sink ON alert_outbox (sink, state, seq);
CREATE TABLE IF NOT EXISTS alert_sinks (
    sink TEXT PRIMARY KEY,
    delivered INTEGER NOT NULL DEFAULT 0,
    messages INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    retries INTEGER NOT NULL DEFAULT 0,
    last_success_ns INTEGER NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    last_error_ns INTEGER NOT NULL DEFAULT 0
);
"""


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One finding waiting for (or failed at) one sink."""

    seq: int
    sink: str
    finding: Finding
    batch: int | None
    attempts: int


@dataclass(slots=True)
class SinkCounters:
    """What the outbox remembers about a sink across restarts."""

    delivered: int = 0
    messages: int = 0
    failed: int = 0
    retries: int = 0
    last_success_ns: int = 0
    last_error: str = ""
    last_error_ns: int = 0


@contextmanager
def atomic(conn: sqlite3.Connection, name: str = "alert_outbox") -> Iterator[None]:
    """A savepoint: commits on its own outside a transaction, nests inside the store's."""
    conn.execute(f"SAVEPOINT {name}")
    try:
        yield
    except BaseException:
        conn.execute(f"ROLLBACK TO {name}")
        conn.execute(f"RELEASE {name}")
        raise
    conn.execute(f"RELEASE {name}")


def enqueue(
    conn: sqlite3.Connection, entries: Iterable[tuple[str, Finding]], now_ns: int
) -> Counter[str]:
    """Queue each (sink, finding); returns how many rows each sink got."""
    rows = [
        (sink, f.id, json.dumps(f.to_json(), separators=(",", ":")), now_ns) for sink, f in entries
    ]
    if rows:
        conn.executemany(
            "INSERT INTO alert_outbox (sink, finding_id, finding, queued_ns) VALUES (?, ?, ?, ?)",
            rows,
        )
    return Counter(sink for sink, *_ in rows)


_COLUMNS = "seq, sink, finding, batch, attempts"


def _row(raw: tuple[int, str, str, int | None, int]) -> OutboxRow:
    seq, sink, finding, batch, attempts = raw
    return OutboxRow(seq, sink, Finding.from_json(json.loads(finding)), batch, attempts)


def pending(
    conn: sqlite3.Connection, sink: str, *, after_seq: int = 0, limit: int = 1
) -> list[OutboxRow]:
    """The oldest pending rows of a sink after `after_seq`, in outbox order."""
    cursor = conn.execute(
        f"SELECT {_COLUMNS} FROM alert_outbox WHERE sink = ? AND state = 'pending' AND seq > ?"
        " ORDER BY seq LIMIT ?",
        (sink, after_seq, limit),
    )
    return [_row(r) for r in cursor.fetchall()]


def batch_rows(conn: sqlite3.Connection, sink: str, batch: int) -> list[OutboxRow]:
    """The pending rows bundled into summary `batch`, in outbox order."""
    cursor = conn.execute(
        f"SELECT {_COLUMNS} FROM alert_outbox WHERE sink = ? AND state = 'pending' AND batch = ?"
        " ORDER BY seq",
        (sink, batch),
    )
    return [_row(r) for r in cursor.fetchall()]


def form_batch(conn: sqlite3.Connection, sink: str, first_seq: int, last_seq: int) -> int:
    """Bundle the unbundled pending rows first_seq..last_seq into one summary; returns its id."""
    with atomic(conn):
        conn.execute(
            "UPDATE alert_outbox SET batch = ? WHERE sink = ? AND state = 'pending'"
            " AND batch IS NULL AND seq BETWEEN ? AND ?",
            (first_seq, sink, first_seq, last_seq),
        )
    return first_seq


def failed(conn: sqlite3.Connection, sink: str, *, limit: int = 100) -> list[tuple[OutboxRow, str]]:
    """The newest permanently failed rows of a sink with their errors."""
    cursor = conn.execute(
        f"SELECT {_COLUMNS}, last_error FROM alert_outbox WHERE sink = ? AND state = 'failed'"
        " ORDER BY seq DESC LIMIT ?",
        (sink, limit),
    )
    return [(_row(r[:5]), r[5]) for r in cursor.fetchall()]


def _touch(conn: sqlite3.Connection, sink: str) -> None:
    conn.execute("INSERT OR IGNORE INTO alert_sinks (sink) VALUES (?)", (sink,))


def ack(conn: sqlite3.Connection, sink: str, seqs: list[int], now_ns: int) -> None:
    """The message covering `seqs` was accepted: drop the rows, count them."""
    with atomic(conn):
        conn.executemany("DELETE FROM alert_outbox WHERE seq = ?", [(s,) for s in seqs])
        _touch(conn, sink)
        conn.execute(
            "UPDATE alert_sinks SET delivered = delivered + ?, messages = messages + 1,"
            " last_success_ns = ? WHERE sink = ?",
            (len(seqs), now_ns, sink),
        )


def fail(conn: sqlite3.Connection, sink: str, seqs: list[int], error: str, now_ns: int) -> None:
    """The message covering `seqs` can never be delivered: keep the rows as failed, count them."""
    with atomic(conn):
        conn.executemany(
            "UPDATE alert_outbox SET state = 'failed', attempts = attempts + 1, last_error = ?"
            " WHERE seq = ?",
            [(error, s) for s in seqs],
        )
        _touch(conn, sink)
        conn.execute(
            "UPDATE alert_sinks SET failed = failed + ?, last_error = ?, last_error_ns = ?"
            " WHERE sink = ?",
            (len(seqs), error, now_ns, sink),
        )


def note_retry(
    conn: sqlite3.Connection, sink: str, seqs: list[int], error: str, now_ns: int
) -> None:
    """An attempt at the message covering `seqs` failed and will be retried."""
    with atomic(conn):
        conn.executemany(
            "UPDATE alert_outbox SET attempts = attempts + 1, last_error = ? WHERE seq = ?",
            [(error, s) for s in seqs],
        )
        _touch(conn, sink)
        conn.execute(
            "UPDATE alert_sinks SET retries = retries + 1, last_error = ?, last_error_ns = ?"
            " WHERE sink = ?",
            (error, now_ns, sink),
        )


def depths(conn: sqlite3.Connection) -> dict[str, int]:
    """Pending rows per sink."""
    cursor = conn.execute(
        "SELECT sink, COUNT(*) FROM alert_outbox WHERE state = 'pending' GROUP BY sink"
    )
    return {sink: n for sink, n in cursor.fetchall()}


def depth(conn: sqlite3.Connection, sink: str) -> int:
    """Pending rows of one sink."""
    row = conn.execute(
        "SELECT COUNT(*) FROM alert_outbox WHERE sink = ? AND state = 'pending'", (sink,)
    ).fetchone()
    return int(row[0])


def counters(conn: sqlite3.Connection) -> dict[str, SinkCounters]:
    """The persisted counters of every sink that ever delivered or failed."""
    cursor = conn.execute(
        "SELECT sink, delivered, messages, failed, retries, last_success_ns, last_error,"
        " last_error_ns FROM alert_sinks"
    )
    return {row[0]: SinkCounters(*row[1:]) for row in cursor.fetchall()}


def trim(conn: sqlite3.Connection, sink: str, keep: int) -> int:
    """Leave at most `keep` pending rows for `sink`, dropping the oldest rows below Critical
    first (rows already bundled into a summary stay); returns how many were dropped."""
    excess = depth(conn, sink) - keep
    if excess <= 0:
        return 0
    severe = ", ".join("?" * len(_SEVERE))
    cursor = conn.execute(
        "DELETE FROM alert_outbox WHERE seq IN (SELECT seq FROM alert_outbox WHERE sink = ?"
        " AND state = 'pending' AND batch IS NULL"
        f" ORDER BY json_extract(finding, '$.priority') IN ({severe}), seq LIMIT ?)",
        (sink, *_SEVERE, excess),
    )
    return cursor.rowcount


def prune_failed(conn: sqlite3.Connection, sink: str, keep: int = FAILED_KEPT) -> int:
    """Delete the failed rows of `sink` older than its newest `keep`; returns how many."""
    cursor = conn.execute(
        "DELETE FROM alert_outbox WHERE sink = ? AND state = 'failed' AND seq <= (SELECT seq"
        " FROM alert_outbox WHERE sink = ? AND state = 'failed' ORDER BY seq DESC LIMIT 1"
        " OFFSET ?)",
        (sink, sink, keep),
    )
    return cursor.rowcount
