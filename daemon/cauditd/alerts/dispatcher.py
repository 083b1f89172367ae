"""The alerts component: routes stored findings into the outbox and runs one worker per sink."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from typing import Any

import aiohttp

from cauditd import tasks
from cauditd.alerts import outbox
from cauditd.alerts.delivery import AlertStore, SinkWorker, delivery_key
from cauditd.alerts.message import for_finding
from cauditd.alerts.ratelimit import parse_rate
from cauditd.alerts.routing import Route
from cauditd.alerts.sinks import Delivery, make_sink
from cauditd.config import AlertsConfig, ConfigError
from cauditd.findings import HOSTNAME, Finding, Priority

log = logging.getLogger(__name__)
TEST_RULE = "cauditd test alert"


class AlertDispatcher:
    """Alert sinks fed from the durable outbox: at-least-once, in order per sink, rate-limited.

    Call `register(store)` before the store starts (schema and write hook), then `start()`.
    """

    def __init__(
        self,
        config: AlertsConfig,
        store: AlertStore,
        *,
        poll_interval_s: float = 5.0,
        max_summary: int = 5000,
    ) -> None:
        self.store = store
        self.workers: dict[str, SinkWorker] = {}
        self.routes: dict[str, Route] = {}
        for index, sink_config in enumerate(config.sinks):
            where = f"alerts.sinks[{index}] ({sink_config.name})"
            if sink_config.name in self.workers:
                raise ConfigError(f"{where}: duplicate sink name")
            try:
                parse_rate(sink_config.rate_limit)
                self.routes[sink_config.name] = Route(sink_config)
                sink = make_sink(sink_config)
            except ValueError as exc:
                raise ConfigError(f"{where}: {exc}") from None
            self.workers[sink_config.name] = SinkWorker(
                sink, store, poll_interval_s=poll_interval_s, max_summary=max_summary
            )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def add_worker(self, worker: SinkWorker) -> None:
        """Another component's outbox consumer (the fleet export), routed and run like a sink.

        Call before the store starts, as `register`.
        """
        name = worker.sink.name
        if name in self.workers:
            raise ConfigError(f"alerts: a sink named {name!r} already exists")
        self.routes[name] = Route(worker.config)
        self.workers[name] = worker

    def register(self, store: AlertStore | None = None) -> None:
        """Add the outbox schema and the write hook to the store (before it starts)."""
        target = store or self.store
        target.add_schema(outbox.SCHEMA)
        target.add_write_hook(self.on_findings)
        target.add_held_hook(self.on_held)

    def on_findings(self, conn: sqlite3.Connection, findings: list[Finding]) -> None:
        """Write hook, on the store's writer thread inside its transaction: queue per sink
        (not to a sink that already sent the finding while the store held it in memory)."""
        entries = [
            (name, finding)
            for finding in findings
            if finding.id is not None
            for name, route in self.routes.items()
            if route.wants(finding) and not self.workers[name].written(finding.id)
        ]
        if not entries:
            return
        try:
            with outbox.atomic(conn, "alert_enqueue"):
                queued = outbox.enqueue(conn, entries, time.time_ns())
        except sqlite3.Error:  # never fail the store's transaction over alerts
            log.exception("alerts: could not queue %d outbox rows", len(entries))
            return
        for name, n in queued.items():
            worker = self.workers[name]
            worker.add_depth(n)
            if worker.depth > worker.config.max_queue:
                self._trim(conn, worker)
            self._wake(worker)

    def on_held(self, findings: list[Finding]) -> None:
        """Held-findings hook, on the store's writer thread: the state dir refused these, so
        each interested sink sends them from memory."""
        for finding in findings:
            for name, route in self.routes.items():
                if route.wants(finding):
                    self.workers[name].hold(finding)
                    self._wake(self.workers[name])

    def _trim(self, conn: sqlite3.Connection, worker: SinkWorker) -> None:
        """A sink's queue went over its max_queue: drop its oldest rows below Critical, down to
        nine tenths of the cap (so a sink stuck at the cap is not trimmed at every batch)."""
        keep = worker.config.max_queue * 9 // 10
        try:
            with outbox.atomic(conn, "alert_trim"):
                dropped = outbox.trim(conn, worker.sink.name, keep)
        except sqlite3.Error:
            log.exception("alerts: could not trim the queue of sink %s", worker.sink.name)
            return
        if dropped:
            worker.dropped(dropped)

    def _wake(self, worker: SinkWorker) -> None:
        loop = self._loop
        if loop is None:
            return
        # RuntimeError: the loop closed under us; the next start reads the outbox anyway
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(worker.wake.set)

    async def start(self) -> None:
        """Open the HTTP session, load counters and queue depths, start one worker per sink."""
        self._loop = asyncio.get_running_loop()
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        depths = await self.store.run_in_writer(outbox.depths)
        counters = await self.store.run_in_writer(outbox.counters)
        for name, worker in self.workers.items():
            worker.session = self._session
            worker.counters = counters.get(name, outbox.SinkCounters())
            worker.add_depth(depths.get(name, 0) - worker.depth)
            self._tasks.append(tasks.create_task(worker.run(), name=f"alerts-{name}"))

    async def stop(self) -> None:
        """Cancel the workers; whatever is undelivered stays in the outbox for the next start."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        self._loop = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    def status(self) -> list[dict[str, Any]]:
        """Per sink: name, kind, queue depth, last success and error, delivered/failed counts."""
        return [worker.status() for worker in self.workers.values()]

    async def send_test(self, sink_name: str) -> dict[str, Any]:
        """Send one test message to a sink now (no outbox, no retry); KeyError if unknown."""
        worker = self.workers[sink_name]
        now = time.time_ns()
        finding = Finding(
            rule=TEST_RULE,
            priority=Priority.NOTICE,
            source="cauditd",
            output=f"Test alert from cauditd on {HOSTNAME} to sink {sink_name}",
            time_ns=now,
            id=0,
        )
        key = delivery_key(HOSTNAME, now, None, f"{sink_name}-test")
        delivery = Delivery(key=key, message=for_finding(finding))
        if self._session is not None:
            outcome = await worker.sink.send(delivery, self._session)
        else:
            async with aiohttp.ClientSession() as session:
                outcome = await worker.sink.send(delivery, session)
        return {
            "sink": sink_name,
            "kind": worker.config.kind,
            "ok": outcome.ok,
            "status": outcome.status,
            "error": outcome.error or None,
            "idempotency_key": key,
        }
