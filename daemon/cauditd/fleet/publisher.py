"""Findings from the durable alert outbox to JetStream, at least once and in order per host.

The fleet export is one more outbox sink ("fleet"): rows are queued in the transaction that stores
each finding, like every chat sink's. Its worker publishes them one at a time and waits for each
ack (a pipeline could store a later finding before an earlier one whose publish was lost when a
leader went away, which would break the per-host order), with `Nats-Msg-Id` = the delivery key,
so a publish retried after a lost ack is stored once (JetStream's duplicate window). Acked rows
leave the outbox in batches; a crash between publish and that batch re-publishes rows JetStream
drops as duplicates. The broker being away only lengthens this sink's queue.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp

from cauditd import metrics
from cauditd.alerts import outbox
from cauditd.alerts.delivery import AlertStore, Batch, SinkWorker, delivery_key
from cauditd.alerts.outbox import OutboxRow
from cauditd.alerts.sinks import Delivery, Outcome, Sink
from cauditd.alerts.sinks.base import DELIVERED
from cauditd.config import FleetConfig, SinkConfig
from cauditd.findings import Priority
from cauditd.fleet.subjects import Subjects, priority_token

if TYPE_CHECKING:
    from nats.js.client import JetStreamContext

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")
SINK_NAME = "fleet"
READ_BATCH = 256  # outbox rows read per writer round trip
ACK_EVERY = 64  # published rows acknowledged in the outbox per writer round trip


def sink_config(config: FleetConfig) -> SinkConfig:
    """The fleet export as the outbox sees it: every finding at or above min_priority, no rate
    limit, retried for ever."""
    return SinkConfig(
        name=SINK_NAME, kind="nats", min_priority=config.min_priority, rate_limit="",
        timeout_s=config.ack_timeout_s, retry_base_s=0.5, retry_max_s=config.retry_max_s,
        max_attempts=0,
    )  # fmt: skip


async def nats_call(call: Awaitable[T]) -> T:
    """Await a nats-py call so that cancelling the caller works.

    nats-py swallows CancelledError in its publish path (a flush of the pending buffer while
    disconnected), so a task cancelled inside it carries on and a stop waits for ever. The
    call runs as a task of its own; cancellation hits our wait, and the call is then cancelled
    (or, if it ignores that too, ends on its own timeout).
    """
    task = asyncio.ensure_future(call)
    try:
        await asyncio.wait({task})
    except asyncio.CancelledError:
        task.cancel()
        task.add_done_callback(_consume)
        raise
    return task.result()


def _consume(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


async def publish_in_order(rows: Sequence[R], publish: Callable[[R], Awaitable[bool]],
                           acknowledge: Callable[[list[R]], Awaitable[None]], every: int) -> None:
    """Publish `rows` one at a time, in order; those published (`publish` returned True) go to
    `acknowledge` in groups of `every`, and the rest at the end, also when cancelled."""
    done: list[R] = []
    try:
        for row in rows:
            if await publish(row):
                done.append(row)
            if len(done) >= every:
                await acknowledge(done)
                done = []
    finally:
        if done:
            await acknowledge(done)


def encode(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


class JetStreamSink(Sink):
    """Publishes finding JSON to cauditd.<host>.finding.<priority>; `js` is set once connected."""

    def __init__(self, config: SinkConfig, subjects: Subjects, host: str, stream: str) -> None:
        super().__init__(config)
        self.subjects = subjects
        self.host = host
        self.stream = stream
        self.js: JetStreamContext | None = None

    def subject(self, priority: Priority) -> str:
        return self.subjects.finding(self.host, priority_token(priority))

    async def send(self, delivery: Delivery, session: aiohttp.ClientSession) -> Outcome:
        document = delivery.message.document
        priority = Priority.parse(str(document.get("priority", "debug")))
        return await self.publish(self.subject(priority), encode(document), delivery.key)

    async def publish(self, subject: str, payload: bytes, key: str) -> Outcome:
        """One publish, waiting for the stream's ack; never raises for broker trouble."""
        from nats import errors as nats_errors
        from nats.js import errors as js_errors

        if self.js is None:
            return Outcome(ok=False, retry=True, error="connection: not connected to NATS yet")
        try:
            await nats_call(self.js.publish(subject, payload, timeout=self.config.timeout_s,
                                            stream=self.stream, headers={"Nats-Msg-Id": key}))
        except nats_errors.MaxPayloadError as exc:
            return Outcome(ok=False, error=f"too large for the server: {exc}")
        except js_errors.APIError as exc:  # 503 no leader, 404 no stream, ...
            return Outcome(ok=False, retry=True, status=exc.code, error=f"jetstream: {exc}")
        except (nats_errors.Error, TimeoutError, OSError) as exc:
            reason = type(exc).__name__
            return Outcome(ok=False, retry=True, error=f"connection: {reason} {exc}".rstrip())
        return DELIVERED


class JetStreamWorker(SinkWorker):
    """The fleet sink's worker: in order, one publish in flight, outbox reads and acks batched."""

    sink: JetStreamSink

    def __init__(self, sink: JetStreamSink, store: AlertStore, *, poll_interval_s: float = 5.0,
                 ) -> None:
        super().__init__(sink, store, poll_interval_s=poll_interval_s)
        self.sink = sink
        self.connected = asyncio.Event()

    async def run(self) -> None:
        name = self.sink.name
        while True:
            self.wake.clear()
            try:
                await self.connected.wait()
                rows = await self._db(lambda c: outbox.pending(c, name, limit=READ_BATCH))
                if rows:
                    await self._publish_rows(rows)
                    continue
                await self._resync_depth()
            except Exception:  # a broken outbox read must not end the worker
                log.exception("fleet: outbox error; retrying later")
            await self._idle()

    async def _publish_rows(self, rows: list[OutboxRow]) -> None:
        await publish_in_order(rows, self._publish_row, self._acked, ACK_EVERY)

    async def _publish_row(self, row: OutboxRow) -> bool:
        """Publish until the stream acks (True) or the row can never go (kept as failed)."""
        finding = row.finding
        key = delivery_key(finding.hostname, finding.id or 0, None, self.sink.name)
        subject = self.sink.subject(finding.priority)
        payload = encode(finding.to_json())
        attempt = 0
        while True:
            outcome = await self.sink.publish(subject, payload, key)
            if outcome.ok:
                return True
            if not outcome.retry:
                await self._record_failure(Batch([row], False), outcome)
                return False
            await self._record_retry(Batch([row], False), outcome, attempt)
            await asyncio.sleep(self.retry_delay_s(attempt, None))
            attempt += 1

    async def _acked(self, rows: list[OutboxRow]) -> None:
        now, name, done = time.time_ns(), self.sink.name, [row.seq for row in rows]
        await self._db(lambda c: outbox.ack(c, name, done, now))
        self.counters.delivered += len(done)
        self.counters.messages += len(done)
        self.counters.last_success_ns = now
        self.add_depth(-len(done))
        metrics.ALERT_DELIVERIES.labels(name, "ok").inc(len(done))

