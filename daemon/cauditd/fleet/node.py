"""The daemon's side of the fleet: one NATS connection, the stream check, the outbox publisher,
the heartbeat and the rule rollout follower (follower.py), started and stopped with the daemon.

Nothing here is on the detection path: findings reach the store and the outbox whatever NATS
does; while the connection is down the publisher waits and its outbox queue grows.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cauditd import __version__, tasks
from cauditd.alerts import AlertDispatcher
from cauditd.alerts.delivery import AlertStore
from cauditd.config import FleetConfig, RulesConfig
from cauditd.findings import HOSTNAME, rfc3339_ns
from cauditd.fleet import records
from cauditd.fleet.connection import Access, FleetError, StreamSpec, connect, ensure_stream
from cauditd.fleet.follower import Reload, RuleFollower, RuleSources
from cauditd.fleet.publisher import JetStreamSink, JetStreamWorker, nats_call, sink_config
from cauditd.fleet.records import RecordPublisher
from cauditd.fleet.subjects import Subjects, host_token

if TYPE_CHECKING:
    from nats.aio.client import Client as NatsClient
    from nats.js.client import JetStreamContext

log = logging.getLogger(__name__)

RETRY_SETUP_S = 5.0


class Fleet:
    """Register with the alert dispatcher before the store starts; `start` after the alerts.

    `host_status()` gives the heartbeat's daemon figures (drops, rule count); `reload` applies a
    RulesConfig as a local reload does and returns the errors of a refused set.
    """

    def __init__(
        self, config: FleetConfig, *, hostname: str, state_dir: Path,
        local_rules: Callable[[], RulesConfig],
        rule_paths: Callable[[RulesConfig], list[Path]],
        host_status: Callable[[], dict[str, Any]], reload: Reload,
    ) -> None:  # fmt: skip
        self.config = config
        self.hostname = hostname or HOSTNAME
        self.host = host_token(config.host or self.hostname)
        self.subjects = Subjects(config.subject_prefix)
        self.access = Access.of(config)
        self.rules = RuleFollower(config.rules_bucket, state_dir / "fleet-rules",
                                  RuleSources(local_rules, rule_paths, reload))
        self._host_status = host_status
        self.sink = JetStreamSink(sink_config(config), self.subjects, self.host, config.stream)
        self.worker: JetStreamWorker | None = None
        self.records: list[RecordPublisher] = []
        self.nc: NatsClient | None = None
        self.js: JetStreamContext | None = None
        self.state = "starting"
        self.last_error = ""
        self._tasks: list[asyncio.Task[Any]] = []

    # -- wiring --------------------------------------------------------------------------------

    def register(self, alerts: AlertDispatcher, store: AlertStore) -> None:
        """The fleet sink joins the outbox beside the chat sinks."""
        self.worker = JetStreamWorker(self.sink, store)
        alerts.add_worker(self.worker)
        kinds = [k for k, on in (("flow", self.config.publish_flows),
                                 ("dns", self.config.publish_dns)) if on]
        if kinds:
            store.add_schema(records.SCHEMA)
        self.records = [RecordPublisher(kind, store, self.sink, self.subjects,
                                        self.config.retry_max_s) for kind in kinds]

    def rules_config(self, local: RulesConfig) -> RulesConfig:
        """The local rules plus the fleet's set this host last applied (if it follows one)."""
        return self.rules.rules_config(local)

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Check the secret files (FleetError stops the daemon's start), then connect in the
        background."""
        self.access.options()
        self.rules.load_digest()
        self._tasks.append(tasks.create_task(self._connect_loop(), name="fleet-connect"))

    async def stop(self) -> None:
        self.state = "stopped"
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.nc.close(), 5)
            self.nc = None

    async def _connect_loop(self) -> None:
        """Connect (retrying for ever), check the streams, then run the fleet's tasks."""
        self.nc = await nats_call(connect(
            self.access, name=f"cauditd {self.hostname}", forever=True, error_cb=self._on_error,
            disconnected_cb=self._on_disconnect, reconnected_cb=self._on_reconnect))
        self.js = self.nc.jetstream(timeout=self.config.ack_timeout_s)
        while True:
            try:
                for spec in (StreamSpec.findings(self.config), StreamSpec.heartbeats(self.config)):
                    await nats_call(ensure_stream(self.js, spec, create=self.config.create_stream))
                break
            except FleetError as exc:
                self._note_error(str(exc), level=logging.ERROR)
            except Exception as exc:  # no leader yet, timeouts: the cluster is settling
                self._note_error(f"fleet: stream set-up: {type(exc).__name__} {exc}")
            await asyncio.sleep(RETRY_SETUP_S)
        self.state = "connected"
        log.info("fleet: publishing to stream %s as host %s", self.config.stream, self.host)
        self.sink.js = self.js
        if self.worker is not None:
            self.worker.connected.set()
            self.worker.wake.set()
        self._tasks.append(tasks.create_task(self._heartbeat_loop(), name="fleet-heartbeat"))
        for publisher in self.records:
            self._tasks.append(tasks.create_task(publisher.run(), name=f"fleet-{publisher.kind}"))
        if self.config.rules_bucket:
            status = f"{self.subjects.rules_status(self.config.rules_bucket)}.{self.host}"
            follow = self.rules.run(self.js, status, self._publish_report, self._note_error)
            self._tasks.append(tasks.create_task(follow, name="fleet-rules"))

    def _note_error(self, error: str, level: int = logging.WARNING) -> None:
        if error != self.last_error:
            log.log(level, "%s", error)
        self.last_error = error

    async def _on_error(self, exc: Exception) -> None:
        quiet = self.state in ("disconnected", "stopped")  # each failed reconnect: debug only
        self._note_error(f"fleet: NATS: {type(exc).__name__} {exc}".rstrip(),
                         level=logging.DEBUG if quiet else logging.WARNING)

    async def _on_disconnect(self) -> None:
        if self.state == "stopped":
            return
        self.state = "disconnected"
        log.warning("fleet: disconnected from NATS; findings wait in the outbox")

    async def _on_reconnect(self) -> None:
        if self.state == "stopped":
            return
        self.state = "connected"
        url = self.nc.connected_url if self.nc is not None else None
        log.info("fleet: reconnected to %s", url.netloc if url else "NATS")
        if self.worker is not None:
            self.worker.wake.set()

    # -- heartbeat -----------------------------------------------------------------------------

    def heartbeat(self) -> dict[str, Any]:
        """What `cauditctl fleet hosts` shows of this host."""
        worker = self.worker
        return {
            "host": self.host,
            "hostname": self.hostname,
            "time": rfc3339_ns(time.time_ns()),
            "version": __version__,
            "pid": os.getpid(),
            "rules_digest": self.rules.digest,
            "rules_bucket": self.config.rules_bucket or None,
            "rules_refused": self.rules.refused or None,
            "outbox_depth": worker.depth if worker is not None else 0,
            "published": worker.counters.delivered if worker is not None else 0,
            **{f"published_{p.kind}": p.published for p in self.records},
            **self._host_status(),
        }

    async def _heartbeat_loop(self) -> None:
        subject = self.subjects.heartbeat(self.host)
        while True:
            await self._publish_plain(subject, self.heartbeat())
            await asyncio.sleep(self.config.heartbeat_interval_s)

    async def _publish_report(self, subject: str, report: dict[str, Any]) -> None:
        await self._publish_plain(subject, {"host": self.host, **report})

    async def _publish_plain(self, subject: str, document: dict[str, Any]) -> None:
        """A best-effort JetStream publish (heartbeats, rollout status); failures are logged."""
        if self.js is None:
            return
        try:
            await nats_call(self.js.publish(subject, json.dumps(document).encode(),
                                            timeout=self.config.ack_timeout_s))
        except Exception as exc:  # the next one will do
            log.debug("fleet: publish to %s failed: %s", subject, exc)

    def status(self) -> dict[str, Any]:
        """The fleet's line in /v1/stats."""
        return {"state": self.state, "host": self.host, "stream": self.config.stream,
                "last_error": self.last_error or None, "rules_digest": self.rules.digest,
                "rules_refused": self.rules.refused or None}
