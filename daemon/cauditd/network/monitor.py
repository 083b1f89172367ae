"""NetworkMonitor: network auditing as one component. It follows the registry's containers onto
their veths, attributes the probes' records to them, turns the kernel flow table into flow_end
events and the flow log, and hands network events (source "network") to the rules.

The parts: network.probes (net.c and its maps), network.attach (veths per container),
network.dnsparse (the parser thread), network.names (peer names from answered queries),
network.inbound (net.port_first_seen), network.flows (the flow log), network.queries (the API).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from cauditd import metrics
from cauditd.config import NetworkConfig
from cauditd.containers.registry import ContainerRegistry
from cauditd.events import _MONO_TO_WALL_NS, ContainerInfo, DnsEvent, Event, FlowEvent
from cauditd.network import tc
from cauditd.network.attach import Attachments, off_loop
from cauditd.network.dnsparse import DnsParser
from cauditd.network.flows import TCP_ACK, TCP_SYN, FlowLog, FlowRecord
from cauditd.network.history import NetworkHistory
from cauditd.network.inbound import InboundPorts
from cauditd.network.listen import ListenPorts
from cauditd.network.names import PeerNames
from cauditd.network.probes import NetProbes, ServedMode
from cauditd.network.queries import NetworkQueries
from cauditd.probes.net_records import FlowKey, dns_capture_size, flow_key_of
from cauditd.tasks import create_task

log = logging.getLogger(__name__)

PROBE = "network"  # label of this probe in metrics, as the events' source
EventSink = Callable[[list[Event]], None]


class NetworkMonitor:
    """Attaches to containers as the registry lists them; hands batches of events to `on_events`.

    Thread use: the ring buffer is drained in the reader's thread, which only decodes records;
    each batch goes to the DNS parser's thread and then, in order, to the loop, where events
    get their container. Netlink work runs in worker threads; the flow log, DNS log, name map
    and listening-port profiles live on the loop. With a `store`, ended flows and DNS records
    are also written to its database at each scrape (NetworkHistory).
    """

    def __init__(
        self, config: NetworkConfig, registry: ContainerRegistry, on_events: EventSink,
        *, poll_interval_s: float = 0.5, store: Any = None,
    ) -> None:
        self._config = config
        self._registry = registry
        self._on_events = on_events
        self._poll_interval_s = poll_interval_s
        self.probes = NetProbes(dns_capture=dns_capture_size(config.dns_capture_bytes),
                                ringbuf_mmap=config.ringbuf_mmap)
        self._attachments = Attachments()
        self._parser = DnsParser(self._on_batch)
        self._tasks: list[asyncio.Task[None]] = []
        self._flows = FlowLog(config.flow_log_size,
                              int(config.flow_idle_timeout_s * 1_000_000_000))
        self._names = PeerNames()
        self._dns_log: deque[dict[str, Any]] = deque(maxlen=config.flow_log_size)
        self._inbound = InboundPorts(ListenPorts(config.inbound_learning_s), self._deliver)
        self.history = NetworkHistory(
            store, max_rows=config.history_max_rows, max_age_s=config.history_days * 86400,
        ) if store is not None and config.history else None
        self._queries = NetworkQueries(self._flows, self._dns_log, self.history)
        self._lost = dict.fromkeys(("flow", "dns", "backlog"), 0)
        self._counters: dict[str, int] = dict.fromkeys(
            ("flows_new", "flows_ended", "dns_queries", "dns_responses", "unknown_ifindex",
             "leftovers_cleaned", "dns_log_evicted", "events_failed"), 0)

    @property
    def counters(self) -> dict[str, int]:
        """Every counter of the monitor and its parts, by name."""
        return {**self._counters, **self._attachments.counters, **self._parser.counters,
                **self._names.counters, **self._inbound.counters}

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the programs, remove a killed daemon's leftovers, follow the containers."""
        if not self._config.enabled:
            return
        await asyncio.to_thread(self._load)
        self._queries.started_wall_ns = time.time_ns()
        self._parser.start()
        self._inbound.start()
        self.probes.start_reader(self._parser.submit)
        metrics.PROBES_ATTACHED.labels(PROBE).set(1)
        self._tasks = [create_task(self._follow_containers(), name="net-containers"),
                       create_task(self._scrape_loop(), name="net-flows")]

    async def stop(self) -> None:
        """Detach everywhere, deliver what the kernel still holds, end every flow."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if not self.probes.loaded:
            return
        await asyncio.to_thread(self._attachments.close)  # an attach under way finishes first
        for container_id in self._attachments.attached():
            await asyncio.to_thread(self._attachments.detach, container_id)
        await asyncio.to_thread(self.probes.stop_reader)
        await asyncio.sleep(0.05)  # let the reader's last batch reach the parser
        await self._parser.stop()
        await self._inbound.stop()
        await self.scrape_now(final=True)
        if self.history is not None:
            self.history.close()
        self.poll_lost()
        metrics.PROBES_ATTACHED.labels(PROBE).set(0)
        self.probes.close()

    def _load(self) -> None:
        self.probes.load()
        cleaned = tc.clean_leftovers()
        self._counters["leftovers_cleaned"] += len(cleaned)
        if cleaned:
            log.info("removed tc filters a previous cauditd left on ifindexes %s", cleaned)

    # -- containers --------------------------------------------------------------------------

    def attach(self, container: ContainerInfo) -> list[int]:
        """Attach to the host-side veths of `container`; the ifindexes (none: host network or
        pid unknown). Blocking netlink work; safe to call from the loop (runs in a thread)."""
        if container.pid <= 0 or not self.probes.loaded:
            return []
        return off_loop(lambda: self._attachments.attach(container, self.probes.programs))

    def detach(self, container_id: str) -> None:
        """Remove our filters from the container's veths; its flows end at the next scrape."""
        off_loop(lambda: self._attachments.detach(container_id))

    def served_inbound(self, rules_need_records: bool) -> None:
        """What new inbound flows to ports a container already serves cost: a record each
        when a rule needs their flow_new (RuleSet.served_inbound_flows), else none, and none
        of their own in the flow table either unless network.per_connection_flows is set."""
        self.probes.set_served(ServedMode.RECORDS if rules_need_records
                               else ServedMode.QUIET if self._config.per_connection_flows
                               else ServedMode.AGGREGATE)

    def attached(self) -> dict[str, list[int]]:
        """Container id -> host ifindexes we are attached to."""
        return {cid: ifs for cid, (_pid, ifs) in self._attachments.attached().items()}

    async def _follow_containers(self) -> None:
        while True:
            try:
                await self.sync_containers()
            except Exception:
                log.exception("network: following containers failed; retrying")
            await asyncio.sleep(self._poll_interval_s)

    async def sync_containers(self) -> None:
        """Attach to new containers, detach from gone or restarted ones (poll of the registry)."""
        self._apply_attach_changes()
        self._inbound.sample_due()
        current = {c.id: c for c in self._registry.containers() if not c.is_host}
        self._attachments.keep_skipped(set(current))
        attached = self._attachments.attached()
        for container_id, (pid, _ifs) in attached.items():
            info = current.get(container_id)
            if info is None or info.pid != pid or not _alive(pid):
                await asyncio.to_thread(self._attachments.detach, container_id)
        for container_id, info in current.items():
            if container_id in attached or info.pid <= 0:
                continue
            if self._attachments.skipped(container_id, info.pid) or not _alive(info.pid):
                continue
            await asyncio.to_thread(self._attachments.attach, info, self.probes.programs)
        self._apply_attach_changes()

    def _apply_attach_changes(self) -> None:
        for container_id, pid in self._attachments.take_changes():
            if pid:
                self._inbound.track(container_id, pid)
            else:
                self._inbound.forget(container_id)

    # -- on the loop -------------------------------------------------------------------------

    def _on_batch(self, events: list[Event]) -> None:
        """A batch with its DNS parsed: attribute each event to its container, then deliver."""
        delivered: list[Event] = []
        container_of = self._attachments.container_of
        for event in events:
            container = container_of(getattr(event, "ifindex", 0))
            if container is None:
                self._counters["unknown_ifindex"] += 1
                continue
            event.container = container
            try:
                if not self._seen(event):
                    continue
            except Exception:  # one bad event never takes its batch with it
                self._counters["events_failed"] += 1
                log.exception("network: handling a %s event failed", event.type)
                continue
            delivered.append(event)
        self._deliver(delivered)

    def _seen(self, event: Event) -> bool:
        """Fold one attributed event into the monitor's state; False when it is not delivered
        now (a flow held back by InboundPorts, a DNS response to no query)."""
        if isinstance(event, FlowEvent):
            return not self._flow_opened(event)
        if isinstance(event, DnsEvent):
            return self._dns_seen(event)
        return True

    def _flow_opened(self, event: FlowEvent) -> bool:
        """Log a new flow and name its peer; True when it is held back (see InboundPorts)."""
        self._counters["flows_new"] += 1
        key = flow_key_of(event)
        event.peer_names = self._names.names(event.container.id, key.peer)
        self._flows.opened(FlowRecord(
            container=event.container, key=key, first_ns=event.first_ns, last_ns=event.last_ns,
            packets=1, bytes=event.bytes, tcp_flags=event.tcp_flags,
            midstream=event.l4proto == "tcp" and not event.tcp_flags & TCP_SYN,
            peer_names=event.peer_names))
        if event.direction != "ingress" or event.l4proto not in ("tcp", "udp"):
            return False
        return self._inbound.judge(event, lambda: self._answered(key))

    def _answered(self, key: FlowKey) -> bool:
        """The container answered the flow `key` opened: the kernel holds its reverse flow,
        with a SYN-ACK for TCP (a closed port answers RST), any packet for UDP."""
        stats = self.probes.flow(key.reverse())
        if stats is None:
            return False
        return key.l4proto != "tcp" or stats.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN | TCP_ACK

    def _dns_seen(self, event: DnsEvent) -> bool:
        """A query the container sent, or a response it received: False for a response to no
        query of its own (counted, not delivered: see cauditd.network.names)."""
        container_id = event.container.id
        if event.type == "dns_query":
            self._names.query(container_id, event)
            self._counters["dns_queries"] += 1
        elif self._names.answer(container_id, event):
            self._counters["dns_responses"] += 1
        else:
            return False
        self._log_dns(event)
        return True

    def _log_dns(self, event: DnsEvent) -> None:
        c = event.container
        entry: dict[str, Any] = {
            "container": c.short_id, "container_id": c.id, "container_name": c.name,
            "time_ns": event.wall_ns, "type": event.type, "id": event.dns_id,
            "name": event.qname, "qtype": event.qtype, "rcode": event.rcode,
            "answers": list(event.answers), "ttls": list(event.ttls),
            "server": event.dip if event.direction == "egress" else event.sip,
            "proto": event.l4proto,
        }
        if len(self._dns_log) == self._dns_log.maxlen:
            self._counters["dns_log_evicted"] += 1
        self._dns_log.append(entry)
        if self.history is not None:
            self.history.add_dns(entry)

    def _deliver(self, events: list[Event]) -> None:
        if not events:
            return
        try:
            self._on_events(events)
        except Exception:
            log.exception("network: the event sink failed on a batch of %d", len(events))

    # -- flows -------------------------------------------------------------------------------

    async def _scrape_loop(self) -> None:
        while True:
            await asyncio.sleep(self._config.flow_scrape_interval_s)
            try:
                await self.scrape_now()
            except Exception:
                log.exception("network: reading the flow table failed")

    async def scrape_now(self, *, final: bool = False) -> list[FlowEvent]:
        """Read the kernel flow table into the log; flow_end events for flows that ended."""
        if not self.probes.loaded:
            return []
        entries = await asyncio.to_thread(self.probes.read_flows)
        closing = self._attachments.closing
        now = time.monotonic_ns()
        ending = [(k, s) for k, s in entries if final or k.ifindex in closing]
        staying = [(k, s) for k, s in entries if not (final or k.ifindex in closing)]
        container_of = self._attachments.container_of
        events, done = self._flows.scrape(ending, container_of, self.peer_names, now, final=True)
        more, done_more = self._flows.scrape(staying, container_of, self.peer_names, now)
        events += more
        try:
            await asyncio.to_thread(self.probes.delete_flows, done + done_more)
        except OSError as exc:  # deleted at a later read (a record ends once): these still go
            log.warning("network: deleting %d ended flows from the kernel table failed: %s",
                        len(done) + len(done_more), exc)
        if closing:  # a later container's veth may get the same ifindex
            await asyncio.to_thread(self.probes.forget_served, closing)
        for container_id in self._attachments.end_closing(closing):
            self._names.forget(container_id)
        self._counters["flows_ended"] += len(events)
        ended, self._flows.just_ended = self._flows.just_ended, []
        if self.history is not None:
            for record in ended:
                self.history.add_flow(record.to_dict(_MONO_TO_WALL_NS))
            await self.history.flush()
        self._deliver(list(events))
        return events

    def peer_names(self, container: ContainerInfo, address: str) -> tuple[str, ...]:
        """Names the container resolved to `address` (rules' fd.sip.name and friends)."""
        return self._names.names(container.id, address)

    # -- reading -----------------------------------------------------------------------------

    def lost(self) -> dict[str, int]:
        """Records lost on their way: those the kernel could not hand over (new-flow records,
        DNS copies) and those dropped because the parser's backlog was full."""
        return {**self.probes.lost(), "backlog": self._parser.dropped}

    def poll_lost(self) -> dict[str, int]:
        """Add new losses to the metric; returns how many since the last call, by kind (as
        `lost`)."""
        now = self.lost()
        delta = {kind: max(count - self._lost.get(kind, 0), 0) for kind, count in now.items()}
        if sum(delta.values()):
            metrics.EVENTS_LOST.labels(PROBE).inc(sum(delta.values()))
        self._lost = now
        return delta

    def flows(self, filters: Mapping[str, Any] | Any = None) -> list[dict[str, Any]]:
        """GET /v1/flows (see NetworkQueries.flows)."""
        return self._queries.flows(filters)

    def dns(self, filters: Mapping[str, Any] | Any = None) -> list[dict[str, Any]]:
        """GET /v1/dns (see NetworkQueries.dns)."""
        return self._queries.dns(filters)

    def stats(self) -> dict[str, Any]:
        attached, interfaces = self._attachments.interfaces()
        return {
            **self.counters, "lost": self.lost(), "containers_attached": attached,
            "interfaces_attached": interfaces, "flows_active": self._flows.active(),
            "flow_log": len(self._flows.records), "flow_log_evicted": self._flows.evicted,
            "dns_log": len(self._dns_log), "containers_skipped": self._attachments.skipped_count,
            "peer_addresses": len(self._names), "dns_pending": self._names.pending(),
            "dns_parse_backlog": self._parser.backlog, "inbound_held": self._inbound.held,
            "inbound_to_served_unsent": self.probes.quiet_served,
            "history_written": dict(self.history.written) if self.history else {},
            "history_dropped": dict(self.history.dropped) if self.history else {},
            "decode_errors": self.probes.decode_errors,
        }


def _alive(pid: int) -> bool:
    """The process exists (a stopped container's pid is gone; the registry keeps it until
    the container is removed)."""
    return os.path.isdir(f"/proc/{pid}")  # procfs: never blocks on disk

