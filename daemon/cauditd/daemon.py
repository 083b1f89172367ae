"""The daemon: starts the components in order, routes events, stops cleanly on a signal.

Start order: store, alerts, rules, probes, containers, API; stop is the reverse, so every event
the probes still held is matched and every finding accepted is on disk before exit.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Awaitable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cauditd import config as configmod
from cauditd import metrics, sdnotify, text
from cauditd.alerts import AlertDispatcher
from cauditd.api import ApiContext, ApiServer, check_config, serve
from cauditd.config import Config, RulesConfig
from cauditd.containers.registry import ContainerRegistry
from cauditd.containers.runtime_binaries import RuntimeBinaries
from cauditd.detection import BACKLOG, RING_FULL, SHED, Detector, describe_drops, describe_load
from cauditd.events import Event, ExecEvent, event_to_json
from cauditd.flood import FloodGuard
from cauditd.network import NetworkMonitor
from cauditd.pipeline import EventPipeline
from cauditd.probes import bpf as bpfmod
from cauditd.probes.syscall import SyscallProbes
from cauditd.proctable import ProcessTable
from cauditd.rules import RuleSet
from cauditd.rules.fields_socket import use_dns_names
from cauditd.store import FindingStore
from cauditd.tasks import cancel_all, create_task
from cauditd.views import RegistryContainers, table_health

if TYPE_CHECKING:
    from cauditd.fleet.node import Fleet

log = logging.getLogger(__name__)

HOUSEKEEPING_INTERVAL = 1.0
FLOOD_CHECK_S = 0.25
DROP_LOG_INTERVAL_S = 10.0  # a storm's drops are logged this often at most (the finding has all)


def print_event(event: Event) -> None:
    """--print-events: every event as one JSON line (always valid UTF-8, see cauditd.text)."""
    sys.stdout.write(text.json_dumps(event_to_json(event)) + "\n")
    sys.stdout.flush()


def log_exec(event: Event) -> None:
    if isinstance(event, ExecEvent):
        ran = f" file={event.exe}" if event.filename and event.filename != event.exe else ""
        log.debug("exec container=%s pid=%d exe=%s%s", event.container.short_id, event.pid,
                  event.filename or event.exe, ran)


class Daemon:
    """Owns the components in start order; the event path is the EventPipeline (probes ->
    container -> process table -> rules -> store)."""

    def __init__(self, config: Config, *, print_events: bool = False) -> None:
        self.config = config
        self.print_events = print_events
        self.started = time.monotonic()
        state_dir = Path(config.daemon.state_dir)
        self.store = FindingStore(state_dir / "findings.db", config.store)
        self.alerts = AlertDispatcher(config.alerts, self.store)
        self.alerts.register(self.store)
        self.fleet = self._make_fleet(config, state_dir)
        self.detector = Detector(
            self.fleet.rules_config(config.rules) if self.fleet else config.rules,
            self.store,
            hostname=config.daemon.hostname,
            on_rules_changed=self._rules_changed,
        )
        self.registry = ContainerRegistry(config.probes, [])
        self.registry.on_metadata.append(self._container_named)
        self.proctable = ProcessTable(
            config.probes.process_table_size,
            upper_dir_of=self.registry.upper_dir,
            runtimes=RuntimeBinaries.find(),
        )
        self.pipeline = EventPipeline(self.registry, self.proctable, self.detector)
        self.probes = SyscallProbes(config.probes, self.pipeline.on_batch)
        self.registry.add_filter(self.probes)
        self.network = NetworkMonitor(
            config.network, self.registry, self.pipeline.on_network_batch, store=self.store
        )
        use_dns_names(self.network.peer_names)
        if print_events:
            self.pipeline.taps.append(print_event)
        if log.isEnabledFor(logging.DEBUG):
            self.pipeline.taps.append(log_exec)
        self.api: ApiServer | None = None
        self._stopping = asyncio.Event()
        self._ready = False
        self.flood = FloodGuard()
        self._drops_logged_at: dict[str, float] = {}
        self._drops_unlogged: dict[str, Counter[str]] = {}
        self._shed_seen: Counter[int] = Counter()
        self._stalls_seen = 0
        self._cpu_seen = time.process_time()
        self._counters = (
            (self.pipeline.seen, metrics.CounterSync(metrics.EVENTS)),
            (self.pipeline.failed, metrics.CounterSync(metrics.EVENTS_FAILED)),
            (text.UNDECODABLE, metrics.CounterSync(metrics.UNDECODABLE)),
        )

    def _make_fleet(self, config: Config, state_dir: Path) -> Fleet | None:
        """The fleet component when [fleet] names servers (nats-py loads only then)."""
        if not config.fleet.servers:
            return None
        from cauditd.detection import rule_paths
        from cauditd.fleet.node import Fleet

        fleet = Fleet(
            config.fleet, hostname=config.daemon.hostname, state_dir=state_dir,
            local_rules=lambda: self.config.rules, rule_paths=rule_paths,
            host_status=self._fleet_status, reload=self.detector_reload,
        )  # fmt: skip
        fleet.register(self.alerts, self.store)
        return fleet

    async def detector_reload(self, rules: RulesConfig) -> list[str]:
        return await self.detector.reload(rules)

    def _fleet_status(self) -> dict[str, Any]:
        """The daemon's figures in the fleet heartbeat."""
        return {
            "ready": self._ready,
            "rules": len(self.detector.rules_info()),
            "drops": {
                "syscall": self.probes.lost_total,
                "network": sum(self.network.lost().values()),
            },
            "containers": len(self.registry.containers()),
        }

    async def run(self) -> int:
        """Run until SIGTERM/SIGINT; SIGHUP reloads. Returns the process exit code."""
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._on_stop_signal, "SIGTERM")
        loop.add_signal_handler(signal.SIGINT, self._on_stop_signal, "SIGINT")
        loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        try:
            await self.start()
            await self._stopping.wait()
        finally:
            await self.stop()
        return 0

    async def start(self) -> None:
        if self.config.api.enabled:  # refuse an unusable API before the probes load
            check_config(self.config.api)
        await self.store.start()
        await self.alerts.start()
        if self.fleet is not None:
            await self.fleet.start()
        self.detector.rules_changed()
        if self.config.probes.enabled:
            await self.probes.start()
            self.proctable.seed(await asyncio.to_thread(self.proctable.read_proc))
            await self.registry.start()
        await self.network.start()
        bpfmod.release_compiler_memory()
        # What start-up made (rules, BCC, modules) lives as long as the daemon: keep it out of
        # the collector's full passes, which otherwise walk it all and stall the loop (~200 ms
        # under a storm). Garbage is collected first, so none is frozen with it.
        gc.collect()
        gc.freeze()
        create_task(self._housekeeping(), name="housekeeping")
        create_task(self._flood_watch(), name="flood-watch")
        if self.config.api.enabled:
            self.api = await serve(self._api_context())
        self._ready = True
        sdnotify.notify("READY=1")
        interval = sdnotify.watchdog_interval()
        if interval:
            create_task(self._watchdog(interval), name="watchdog")
        log.info(
            "cauditd ready: %d rules, %d containers tracked, API %s, started in %.2fs",
            len(self.detector.rules_info()),
            len(self.registry.containers()),
            f"on {self.api.host}:{self.api.port}" if self.api else "off",
            time.monotonic() - self.started,
        )

    async def stop(self) -> None:
        sdnotify.notify("STOPPING=1")
        self._ready = False
        if self.api is not None:
            await self._timed("api", self.api.close())
        await self._timed("network", self.network.stop())
        await self._timed("probes", self.probes.stop())
        self.pipeline.flush()
        await self._timed("registry", self.registry.stop())
        if self.fleet is not None:
            await self._timed("fleet", self.fleet.stop())
        await self._timed("alerts", self.alerts.stop())
        await self._timed("store", self.store.stop())
        await cancel_all()
        self._sync_counts()
        log.info("cauditd stopped: %d events seen", sum(self.pipeline.seen.values()))

    def _on_stop_signal(self, name: str) -> None:
        log.info("%s: stopping", name)
        self._stopping.set()

    @staticmethod
    async def _timed(name: str, stopping: Awaitable[None]) -> None:
        began = time.monotonic()
        log.debug("stopping %s", name)
        await stopping
        log.debug("stopped %s in %.3fs", name, time.monotonic() - began)

    def request_stop(self) -> None:
        self._stopping.set()

    def _api_context(self) -> ApiContext:
        return ApiContext(
            store=self.store,
            rules=self,
            containers=RegistryContainers(self.registry),
            stats=self,
            alerts=self.alerts,
            network=self.network,
            config=self.config.api,
        )

    def _container_named(self, container_id: str) -> None:
        container = self.registry.get(container_id)
        if container is not None:
            self.detector.container_named(container)

    def _rules_changed(self, ruleset: RuleSet) -> None:
        """Tell the probes which syscalls, opens, connects, dups and inbound flows the rules need
        (all of them for --print-events), and which environment variables they read."""
        every = self.print_events or self.config.probes.all_syscalls
        unfiltered = every or not self.config.probes.kernel_filters
        self.probes.set_kernel_filters(None if unfiltered else ruleset.kernel_filters())
        self.probes.set_syscalls(None if every else ruleset.needed_syscalls())
        self.probes.set_env_names(ruleset.env_names())
        self.network.served_inbound(self.print_events or ruleset.served_inbound_flows())

    # --- API views (RulesView, StatsView; the network monitor is the NetworkView) ------------

    def rules_info(self) -> list[dict[str, Any]]:
        return self.detector.rules_info()

    async def reload(self) -> list[str]:
        """Re-read the config file and the rules; a broken set is refused, the old one stays."""
        try:
            fresh = configmod.load(self.config.path or None)
        except configmod.ConfigError as exc:
            log.error("reload refused, keeping the running configuration: %s", exc)
            return [str(exc)]
        rules = self.fleet.rules_config(fresh.rules) if self.fleet else fresh.rules
        errors = await self.detector.reload(rules)
        if not errors:
            self.config.rules = fresh.rules
            log.info("configuration reloaded from %s", self.config.path or configmod.DEFAULT_PATH)
        return errors

    def stats(self) -> dict[str, Any]:
        return {
            "uptime_s": round(time.monotonic() - self.started, 3),
            "ready": self._ready,
            "probes": {
                "syscall": {
                    "attached": self._ready and self.config.probes.enabled,
                    "events": sum(
                        n for (src, _), n in self.pipeline.seen.items() if src == "syscall"
                    ),
                    "lost": self.probes.lost_total,
                    "decoder": self.probes.decoder,
                    "kernel_structs": self.probes.kernel_structs,
                    "syscalls_enabled": sorted(self.probes.enabled_syscalls),
                    "filters": self.probes.filters,
                    "filtered": self.probes.filtered,
                    "handoff": self.probes.handoff,
                    "shed": sum(self.probes.shed.values()),
                    "shedding": sorted(self._shedding_names()),
                },
            },
            "network": self.network.stats(),
            "store": self.store.stats(),
            **({"fleet": self.fleet.status()} if self.fleet else {}),
            "events_by_type": {f"{s}:{t}": n for (s, t), n in sorted(self.pipeline.seen.items())},
            "pipeline": self.pipeline.stats(),
            "findings_by_rule": {
                r["name"]: r["matches"] for r in self.rules_info() if r["matches"]
            },
            "containers_tracked": len(self.registry.containers()),
            "processes_tracked": len(self.proctable),
            "tables": table_health(self.registry, self.proctable),
            "pid": os.getpid(),
        }

    def _shedding_names(self) -> list[str]:
        names = []
        for cgroup_id in self.flood.shedding:
            container = self.registry.resolve(cgroup_id)
            names.append(container.name or container.short_id if container else str(cgroup_id))
        return names

    def ready(self) -> bool:
        """True once the probes are attached (GET /readyz)."""
        return self._ready

    # --- background --------------------------------------------------------------------------

    def _on_sighup(self) -> None:
        create_task(self.reload(), name="reload")

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(HOUSEKEEPING_INTERVAL)
            self.proctable.expire()
            self.detector.flush_updates()
            self._sync_counts()
            self._report_failures()
            self.probes.poll_filtered()
            lost = self.network.poll_lost()
            backlog = lost.pop("backlog", 0)
            self._report_drops("network", {RING_FULL: sum(lost.values()), BACKLOG: backlog})

    async def _flood_watch(self) -> None:
        """Four times a second: who sent what, what the syscall reader sheds (flood.py), and
        the syscall probes' drops. Often, so that a storm is shed within a fraction of a
        second, while it still costs the loop every event."""
        while True:
            await asyncio.sleep(FLOOD_CHECK_S)
            lost, shed = self._guard_against_floods()
            self._report_drops("syscall", {RING_FULL: lost, SHED: shed})

    def _guard_against_floods(self) -> tuple[int, int]:
        """Close the load tick and choose what the syscall reader sheds; returns the events
        the kernel lost and those shed since the last call."""
        shed = self.probes.shed - self._shed_seen
        self._shed_seen = self.probes.shed.copy()
        load = self.pipeline.load
        cpu_s = time.process_time()
        self.flood.observe(sum(load.cgroups.values()), cpu_s - self._cpu_seen)
        self._cpu_seen = cpu_s
        load.cgroups.update(shed)  # the flooder stays the top loader while it is shed
        sent = load.cgroups.copy()
        load.tick()
        lost = self.probes.poll_lost()
        stalls = int(self.probes.handoff.get("stalls", 0))
        pressure = bool(lost) or stalls > self._stalls_seen
        self._stalls_seen = stalls
        self.probes.shed_cgroups(self.flood.decide(pressure, sent, FLOOD_CHECK_S))
        return lost, sum(shed.values())

    def _report_drops(self, probe: str, drops: dict[str, int]) -> None:
        if not sum(drops.values()):
            return
        loaders = self.pipeline.load.top()
        self.detector.report_drops(probe, drops, loaders)
        unlogged = self._drops_unlogged.setdefault(probe, Counter())
        unlogged.update(drops)
        now = time.monotonic()
        if now - self._drops_logged_at.get(probe, -DROP_LOG_INTERVAL_S) >= DROP_LOG_INTERVAL_S:
            self._drops_logged_at[probe] = now
            log.warning("%s probes lost %d events (%s)%s since the last such line", probe,
                        sum(unlogged.values()), describe_drops(unlogged), describe_load(loaders))
            unlogged.clear()

    def _report_failures(self) -> None:
        for stage, failures in self.pipeline.take_failures().items():
            self.detector.report_failures(stage, failures.count, failures.error,
                                          failures.container)

    def _sync_counts(self) -> None:
        """Move the per-event counts into Prometheus (kept off the per-event path)."""
        for counts, sync in self._counters:
            sync.sync(counts)

    async def _watchdog(self, interval: float) -> None:
        while True:
            sdnotify.notify("WATCHDOG=1")
            await asyncio.sleep(interval)
