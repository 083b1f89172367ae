"""The daemon: starts the components in order, routes events, stops cleanly on a signal."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
import time

from cauditd import config as configmod
from cauditd import metrics, sdnotify
from cauditd.config import Config
from cauditd.containers.holdback import MetadataHoldBack
from cauditd.containers.registry import ContainerRegistry
from cauditd.events import Event, ExecEvent, event_to_json
from cauditd.probes.syscall import SyscallProbes
from cauditd.proctable import ProcessTable
from cauditd.tasks import cancel_all, create_task

log = logging.getLogger(__name__)

LOST_POLL_INTERVAL = 1.0


class Daemon:
    """Owns the components and the event path: probes -> registry -> (rules -> findings)."""

    def __init__(self, config: Config, *, print_events: bool = False) -> None:
        self.config = config
        self.print_events = print_events
        self.started = time.monotonic()
        self.events_seen = 0
        self.probes = SyscallProbes(config.probes, self._on_events)
        self.registry = ContainerRegistry(config.probes, [self.probes])
        self.proctable = ProcessTable(
            config.probes.process_table_size, upper_dir_of=self.registry.upper_dir
        )
        self.holdback = MetadataHoldBack(self.registry, self._deliver)
        self._stopping = asyncio.Event()
        self._ready = False

    async def run(self) -> int:
        """Run until SIGTERM/SIGINT; SIGHUP reloads. Returns the process exit code."""
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._stopping.set)
        loop.add_signal_handler(signal.SIGINT, self._stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        try:
            await self.start()
            await self._stopping.wait()
        finally:
            await self.stop()
        return 0

    async def start(self) -> None:
        if self.config.probes.enabled:
            await self.probes.start()
            self.proctable.seed(await asyncio.to_thread(self.proctable.read_proc))
            await self.registry.start()
            create_task(self._watch_losses(), name="lost-events")
        self._ready = True
        sdnotify.notify("READY=1")
        interval = sdnotify.watchdog_interval()
        if interval:
            create_task(self._watchdog(interval), name="watchdog")
        log.info(
            "cauditd ready: %d containers tracked, started in %.2fs",
            len(self.registry.containers()),
            time.monotonic() - self.started,
        )

    async def stop(self) -> None:
        sdnotify.notify("STOPPING=1")
        self._ready = False
        await self.probes.stop()
        await self.registry.stop()
        await cancel_all()
        log.info("cauditd stopped: %d events seen", self.events_seen)

    def request_stop(self) -> None:
        self._stopping.set()

    @property
    def ready(self) -> bool:
        return self._ready

    def _on_events(self, batch: list[Event]) -> None:
        resolve = self.registry.resolve
        for event in batch:
            container = resolve(getattr(event, "cgroup_id", 0))
            if container is None:
                continue
            event.container = container
            self.holdback.submit(event)

    def _deliver(self, event: Event) -> None:
        self.proctable.apply(event)
        self.events_seen += 1
        metrics.EVENTS.labels("syscall", event.type).inc()
        self._handle(event)

    def _handle(self, event: Event) -> None:
        if self.print_events:
            sys.stdout.write(json.dumps(event_to_json(event)) + "\n")
            sys.stdout.flush()
        elif isinstance(event, ExecEvent):
            log.info(
                "exec container=%s pid=%d exe=%s", event.container.short_id, event.pid, event.exe
            )

    def _on_sighup(self) -> None:
        create_task(self.reload(), name="reload")

    async def reload(self) -> None:
        """Re-read the config file; what cannot change at run time is reported, not applied."""
        try:
            fresh = configmod.load(self.config.path or None)
        except configmod.ConfigError as exc:
            log.error("reload refused, keeping the running configuration: %s", exc)
            return
        self.config.rules = fresh.rules
        self.config.alerts = fresh.alerts
        log.info("configuration reloaded from %s", self.config.path or configmod.DEFAULT_PATH)

    async def _watch_losses(self) -> None:
        while True:
            await asyncio.sleep(LOST_POLL_INTERVAL)
            self.proctable.expire()
            lost = self.probes.poll_lost()
            if lost:
                log.warning("syscall probes lost %d events (ring buffer full)", lost)

    async def _watchdog(self, interval: float) -> None:
        while True:
            sdnotify.notify("WATCHDOG=1")
            await asyncio.sleep(interval)
