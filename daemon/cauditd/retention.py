"""Retention of findings: by age, then by count, and never at the cost of severe evidence.

Age: findings older than `retention_days` go. Count: past `max_findings`, the oldest findings
below Critical go first; Critical, Alert and Emergency findings are deleted by count only when
they alone are more than `max_findings` (then the oldest of them), so a flood of lesser findings
can never erase them. Every run that deletes says so in the log, and the totals are in
/v1/stats (`store.retention`).
"""

from __future__ import annotations

import functools
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from cauditd.config import StoreConfig
from cauditd.findings import Priority, rfc3339_ns

log = logging.getLogger(__name__)
T = TypeVar("T")
RunInWriter = Callable[[Callable[[sqlite3.Connection], T]], Awaitable[T]]

DELETE_CHUNK = 500
SEVERE = int(Priority.CRITICAL)  # this priority value or lower is never deleted for lesser ones


@dataclass(slots=True)
class RetentionStats:
    """What retention deleted since the daemon started."""

    runs: int = 0
    deleted_by_age: int = 0
    deleted_by_count: int = 0
    deleted_severe_by_count: int = 0
    last_run_ns: int = 0
    last_deleted: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "runs": self.runs,
            "deleted_by_age": self.deleted_by_age,
            "deleted_by_count": self.deleted_by_count,
            "deleted_severe_by_count": self.deleted_severe_by_count,
            "last_run": rfc3339_ns(self.last_run_ns) if self.last_run_ns else None,
            "last_deleted": self.last_deleted,
        }


class Retention:
    """Deletes in chunks of DELETE_CHUNK rows through the store's writer, between its batches."""

    def __init__(self, config: StoreConfig, run_in_writer: RunInWriter[Any]) -> None:
        self.config = config
        self.stats = RetentionStats()
        self._run = run_in_writer

    async def apply(self) -> int:
        """One retention pass; returns how many findings it deleted."""
        cutoff = time.time_ns() - int(self.config.retention_days * 86400 * 1e9)
        by_age = await self._delete("time_ns < ?", (cutoff,), None)
        excess = await self._run(_count) - self.config.max_findings
        lesser = await self._delete("priority > ?", (SEVERE,), excess) if excess > 0 else 0
        severe = await self._delete("1", (), excess - lesser) if excess - lesser > 0 else 0
        self._record(by_age, lesser, severe)
        return by_age + lesser + severe

    def _record(self, by_age: int, lesser: int, severe: int) -> None:
        stats = self.stats
        stats.runs += 1
        stats.last_run_ns = time.time_ns()
        stats.last_deleted = by_age + lesser + severe
        stats.deleted_by_age += by_age
        stats.deleted_by_count += lesser + severe
        stats.deleted_severe_by_count += severe
        if by_age:
            log.info("retention deleted %d findings older than %g days", by_age,
                     self.config.retention_days)
        if lesser or severe:
            log.warning(
                "retention deleted %d findings over max_findings (%d): the oldest below Critical "
                "first (%d of them Critical or above, which alone are over the limit)",
                lesser + severe, self.config.max_findings, severe,
            )  # fmt: skip

    async def _delete(self, condition: str, args: tuple[int, ...], limit: int | None) -> int:
        """Delete the oldest findings matching `condition`, at most `limit` (None: all)."""
        total = 0
        while limit is None or total < limit:
            chunk = DELETE_CHUNK if limit is None else min(DELETE_CHUNK, limit - total)
            sql = (f"DELETE FROM findings WHERE id IN (SELECT id FROM findings WHERE {condition}"
                   f" ORDER BY id LIMIT {chunk})")
            count = await self._run(functools.partial(_delete_rows, sql=sql, args=args))
            total += count
            if count < chunk:
                break
        return total


def _delete_rows(conn: sqlite3.Connection, sql: str, args: tuple[int, ...]) -> int:
    return int(conn.execute(sql, args).rowcount)


def _count(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT COUNT(*) FROM findings").fetchone()[0])
