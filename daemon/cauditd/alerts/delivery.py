"""One worker per sink: takes the sink's outbox rows in order, applies flood control, delivers
with retries, and records the outcome in the outbox.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
import re
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import aiohttp

from cauditd import metrics
from cauditd.alerts import outbox
from cauditd.alerts.message import Message, for_finding, for_summary
from cauditd.alerts.outbox import OutboxRow, SinkCounters
from cauditd.alerts.ratelimit import TokenBucket, parse_rate
from cauditd.alerts.sinks import Delivery, Outcome, Sink
from cauditd.findings import Finding, rfc3339_ns

log = logging.getLogger(__name__)
T = TypeVar("T")
RETRY_AFTER_CAP_S = 3600.0
_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class AlertStore(Protocol):
    """What the alerts need from the findings store (FindingStore provides it)."""

    def add_schema(self, sql: str) -> None: ...

    def add_write_hook(self, fn: Callable[[sqlite3.Connection, list[Finding]], None]) -> None: ...

    async def run_in_writer(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

    def add_held_hook(self, fn: Callable[[list[Finding]], None]) -> None: ...

    @property
    def problem(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Batch:
    """Outbox rows sent as one message: one finding, or a summary of several."""

    rows: list[OutboxRow]
    summary: bool

    @property
    def seqs(self) -> list[int]:
        return [row.seq for row in self.rows]


def delivery_key(hostname: str, first_id: int, last_id: int | None, sink: str) -> str:
    """Stable per sink and finding(s): cauditd-<host>-<finding id>-<sink> (ids a-b: a summary)."""
    ids = str(first_id) if last_id is None else f"{first_id}-{last_id}-summary"
    return _KEY_UNSAFE.sub("_", f"cauditd-{hostname}-{ids}-{sink}")


class SinkWorker:
    """Delivers one sink's outbox in order; a failing head blocks only this sink."""

    def __init__(
        self,
        sink: Sink,
        store: AlertStore,
        *,
        poll_interval_s: float = 5.0,
        max_summary: int = 5000,
    ) -> None:
        self.sink = sink
        self.config = sink.config
        self.store = store
        self.poll_interval_s = poll_interval_s
        self.max_summary = max_summary
        self.bucket = TokenBucket(parse_rate(sink.config.rate_limit))
        self.wake = asyncio.Event()
        self.session: aiohttp.ClientSession | None = None
        self.counters = SinkCounters()
        self.counters_dropped = 0  # rows trimmed from a queue over max_queue, since start
        self._depth = 0
        self._depth_lock = threading.Lock()
        # Findings the store could not write (state dir full), sent from memory meanwhile.
        self._held: collections.deque[Finding] = collections.deque()
        self._held_ids: set[int] = set()
        self._sent_held: set[int] = set()

    @property
    def depth(self) -> int:
        """Findings waiting in the outbox for this sink."""
        return self._depth

    def add_depth(self, n: int) -> None:
        """Count `n` rows queued (positive) or done (negative); safe from the writer thread."""
        with self._depth_lock:
            self._depth = max(0, self._depth + n)
            metrics.ALERT_QUEUE.labels(self.sink.name).set(self._depth)

    def dropped(self, count: int) -> None:
        """`count` rows left the queue unsent because it was over max_queue (writer thread)."""
        self.add_depth(-count)
        self.counters_dropped += count
        metrics.ALERT_DROPPED.labels(self.sink.name).inc(count)
        log.warning(
            "alert sink %s: %d findings over its queue of %d left it unsent (oldest below "
            "Critical first; they stay in the findings store)",
            self.sink.name, count, self.config.max_queue,
        )  # fmt: skip

    # -- findings held in memory while the state dir refuses writes ---------------------------

    def hold(self, finding: Finding) -> None:
        """Send `finding` from memory: the store holds it unwritten (writer thread)."""
        with self._depth_lock:
            if len(self._held) >= self.config.max_queue:
                self._held_ids.discard(self._held.popleft().id or 0)
                self.counters_dropped += 1
                metrics.ALERT_DROPPED.labels(self.sink.name).inc()
            self._held.append(finding)
            self._held_ids.add(finding.id or 0)

    def written(self, finding_id: int) -> bool:
        """The store wrote a finding it had held: True when this sink already sent it from
        memory (no outbox row then); one still waiting in memory goes by the outbox instead."""
        with self._depth_lock:
            if finding_id in self._sent_held:
                self._sent_held.discard(finding_id)
                return True
            if finding_id in self._held_ids:
                self._held_ids.discard(finding_id)
                self._held = collections.deque(f for f in self._held if f.id != finding_id)
            return False

    def _next_held(self) -> Finding | None:
        with self._depth_lock:
            if not self._held:
                return None
            finding = self._held.popleft()
            self._held_ids.discard(finding.id or 0)
            self._sent_held.add(finding.id or 0)  # claimed: the outbox will not send it again
            return finding

    async def _deliver_held(self) -> bool:
        """Send one held finding (rate limit and retries as usual, no outbox row to record in);
        False when none is held."""
        finding = self._next_held()
        if finding is None:
            return False
        while True:  # no summaries from memory: each held finding waits for the rate limit
            if self.bucket.try_take():
                break
            await asyncio.sleep(self.bucket.wait_s())
        delivery = Delivery(
            key=delivery_key(finding.hostname, finding.id or 0, None, self.sink.name),
            message=for_finding(finding, self.config.template),
        )
        outcome = await self._send(delivery, 0, self._count_retry)
        if outcome.ok:
            self._count_success(1)
        else:
            log.warning("alert sink %s: a finding held in memory could not be sent: %s",
                        self.sink.name, outcome.error)
            self._count_failure(1, outcome)
        return True

    async def run(self) -> None:
        """Deliver until cancelled; undelivered rows stay in the outbox."""
        while True:
            self.wake.clear()
            try:
                if await self._deliver_held():
                    continue
                if self.store.problem:  # acks cannot be written: the outbox waits for the disk
                    await self._idle()
                    continue
                window = await self._next_window()
                if window:
                    done = await asyncio.gather(
                        *(self._deliver(batch) for batch in window), return_exceptions=True
                    )
                    self._log_errors(done)
                    continue
                await self._resync_depth()
            except Exception:  # a broken outbox read must not end the worker
                log.exception("alert sink %s: outbox error; retrying later", self.sink.name)
            await self._idle()

    def _log_errors(self, results: list[BaseException | None]) -> None:
        for result in results:
            if isinstance(result, asyncio.CancelledError):
                raise result
            if isinstance(result, BaseException):
                log.error(
                    "alert sink %s: delivery error; the rows stay pending",
                    self.sink.name,
                    exc_info=result,
                )

    async def _resync_depth(self) -> None:
        """With nothing pending seen, set the depth from the outbox (corrects start-up races)."""
        name = self.sink.name
        pending = await self._db(lambda c: outbox.depth(c, name))
        with self._depth_lock:
            self._depth = pending
            metrics.ALERT_QUEUE.labels(name).set(pending)

    async def _idle(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), self.poll_interval_s)

    async def _db(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self.store.run_in_writer(fn)

    async def _next_window(self) -> list[Batch]:
        window: list[Batch] = []
        after = 0
        for _ in range(max(1, self.config.max_in_flight)):
            batch = await self._next_batch(after, may_wait=not window)
            if batch is None:
                break
            window.append(batch)
            after = batch.rows[-1].seq
        return window

    async def _next_batch(self, after: int, *, may_wait: bool) -> Batch | None:
        name = self.sink.name
        rows = await self._db(lambda c: outbox.pending(c, name, after_seq=after, limit=1))
        if not rows:
            return None
        head = rows[0]
        if head.batch is not None:  # a summary formed before a retry or restart: same rows
            batch_id = head.batch
            self.bucket.try_take()
            return Batch(await self._db(lambda c: outbox.batch_rows(c, name, batch_id)), True)
        if self.bucket.try_take():
            return Batch([head], False)
        if not may_wait:
            return None
        while True:  # hold findings back until the rate allows one more message
            if self.bucket.try_take():
                break
            await asyncio.sleep(self.bucket.wait_s())
        limit = self.max_summary
        rows = await self._db(lambda c: outbox.pending(c, name, after_seq=after, limit=limit))
        if len(rows) == 1:
            return Batch(rows, False)
        first, last = rows[0].seq, rows[-1].seq
        await self._db(lambda c: outbox.form_batch(c, name, first, last))
        return Batch(rows, True)

    def message(self, batch: Batch) -> Delivery:
        """The message and idempotency key for a batch (the same on every retry)."""
        name = self.sink.name
        findings = [row.finding for row in batch.rows]
        first = findings[0]
        message: Message
        if batch.summary:
            message = for_summary(findings, self.config.rate_limit)
            key = delivery_key(first.hostname, first.id or 0, findings[-1].id or 0, name)
        else:
            message = for_finding(first, self.config.template)
            key = delivery_key(first.hostname, first.id or 0, None, name)
        return Delivery(key=key, message=message)

    async def _deliver(self, batch: Batch) -> None:
        delivery = self.message(batch)
        prior = max(row.attempts for row in batch.rows)

        async def note_retry(outcome: Outcome, attempt: int) -> None:
            await self._record_retry(batch, outcome, attempt)

        outcome = await self._send(delivery, prior, note_retry)
        if outcome.ok:
            await self._record_success(batch)
        else:
            await self._record_failure(batch, outcome)

    async def _send(self, delivery: Delivery, prior: int,
                    note_retry: Callable[[Outcome, int], Awaitable[None]]) -> Outcome:
        """Attempt until delivered or given up (permanent error, or max_attempts reached);
        the last outcome."""
        attempt = 0
        while True:
            assert self.session is not None, "worker started without a session"
            outcome = await self.sink.send(delivery, self.session)
            limit = self.config.max_attempts
            if outcome.ok or not outcome.retry or (limit and prior + attempt + 1 >= limit):
                return outcome
            await note_retry(outcome, attempt)
            await asyncio.sleep(self.retry_delay_s(attempt, outcome.retry_after_s))
            attempt += 1

    def retry_delay_s(self, attempt: int, retry_after_s: float | None) -> float:
        """Retry-After when the service gave one, else capped exponential backoff with jitter."""
        if retry_after_s is not None:
            return min(retry_after_s, RETRY_AFTER_CAP_S)
        delay = min(self.config.retry_max_s, self.config.retry_base_s * 2.0**attempt)
        return delay * random.uniform(0.5, 1.0)

    async def _record_success(self, batch: Batch) -> None:
        now, seqs, name = time.time_ns(), batch.seqs, self.sink.name
        await self._db(lambda c: outbox.ack(c, name, seqs, now))
        self._count_success(len(seqs))
        self.add_depth(-len(seqs))

    async def _record_failure(self, batch: Batch, outcome: Outcome) -> None:
        now, seqs, name = time.time_ns(), batch.seqs, self.sink.name
        log.warning(
            "alert sink %s: permanent failure (status %s) for %d finding(s), kept as failed: %s",
            name, outcome.status, len(seqs), outcome.error,
        )  # fmt: skip
        await self._db(lambda c: outbox.fail(c, name, seqs, outcome.error, now))
        await self._db(lambda c: outbox.prune_failed(c, name))
        self._count_failure(len(seqs), outcome)
        self.add_depth(-len(seqs))

    async def _record_retry(self, batch: Batch, outcome: Outcome, attempt: int) -> None:
        now, seqs, name = time.time_ns(), batch.seqs, self.sink.name
        await self._db(lambda c: outbox.note_retry(c, name, seqs, outcome.error, now))
        await self._count_retry(outcome, attempt)

    def _count_success(self, findings: int) -> None:
        self.counters.delivered += findings
        self.counters.messages += 1
        self.counters.last_success_ns = time.time_ns()
        metrics.ALERT_DELIVERIES.labels(self.sink.name, "ok").inc()

    def _count_failure(self, findings: int, outcome: Outcome) -> None:
        self.counters.failed += findings
        self._note_error(outcome.error, time.time_ns())
        metrics.ALERT_DELIVERIES.labels(self.sink.name, "failed").inc()

    async def _count_retry(self, outcome: Outcome, attempt: int) -> None:
        level = logging.WARNING if attempt == 0 else logging.DEBUG
        log.log(level, "alert sink %s: attempt %d failed, will retry: %s",
                self.sink.name, attempt + 1, outcome.error)
        self.counters.retries += 1
        self._note_error(outcome.error, time.time_ns())
        metrics.ALERT_DELIVERIES.labels(self.sink.name, "retry").inc()
        metrics.ALERT_RETRIES.labels(self.sink.name, outcome.reason).inc()

    def _note_error(self, error: str, now: int) -> None:
        self.counters.last_error = error
        self.counters.last_error_ns = now

    def status(self) -> dict[str, Any]:
        """This sink's line in GET /v1/alerts."""
        c = self.counters
        return {
            "name": self.sink.name,
            "kind": self.config.kind,
            "queue_depth": self.depth,
            "rate_limit": self.config.rate_limit,
            "last_success": rfc3339_ns(c.last_success_ns) if c.last_success_ns else None,
            "last_error": c.last_error or None,
            "last_error_time": rfc3339_ns(c.last_error_ns) if c.last_error_ns else None,
            "delivered": c.delivered,
            "messages": c.messages,
            "failed": c.failed,
            "retries": c.retries,
            "dropped": self.counters_dropped,
        }
