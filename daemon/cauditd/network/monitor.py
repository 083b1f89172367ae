"""NetworkMonitor: the tc programs on every tracked container's host-side veth, the flow log,
DNS parsing, and network events (source "network") for the rules."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import queue
import struct
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from cauditd import metrics
from cauditd.config import NetworkConfig
from cauditd.containers.registry import ContainerRegistry
from cauditd.events import _MONO_TO_WALL_NS, ContainerInfo, DnsEvent, Event, FlowEvent
from cauditd.network import dns, tc, veth
from cauditd.network.flows import TCP_ACK, TCP_SYN, FlowKey, FlowLog, FlowRecord, FlowStats
from cauditd.network.history import NetworkHistory
from cauditd.network.listen import ListenPorts
from cauditd.tasks import create_task

log = logging.getLogger(__name__)
T = TypeVar("T")

PROBE = "network"  # label of this probe in metrics, as the events' source
RECORD_HEAD = struct.Struct("<IIQ")  # kind, flags (flow) or caplen (dns), ts_ns
RECORD_TAIL = struct.Struct("<IB3x")  # len, tcp_flags
KEY_OFFSET, TAIL_OFFSET, PAYLOAD_OFFSET = 16, 60, 68
REC_FLOW, REC_DNS = 1, 2
MAX_DNS_CAPTURE = 4096
PARSE_CACHE_SIZE = 4096  # DNS payloads (less their id) already parsed
PARSE_BACKLOG = 200_000  # DNS records waiting for the parser; more are dropped and counted
EventSink = Callable[[list[Event]], None]


@dataclass(slots=True, kw_only=True)
class PendingDns(DnsEvent):
    """A DNS record copied out of the ring buffer, not parsed yet (never leaves the monitor)."""

    payload: bytes = b""


def dns_capture_size(configured: int) -> int:
    """The kernel's DNS copy size: the configured bytes rounded up to a power of two."""
    size = 64
    while size < min(max(configured, 64), MAX_DNS_CAPTURE):
        size *= 2
    return size


def _off_loop(fn: Callable[[], T]) -> T:
    """Run blocking netlink work (pyroute2's sync API runs its own loop) off any event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return fn()
    result: list[Any] = []

    def run() -> None:
        try:
            result.append((True, fn()))
        except BaseException as exc:
            result.append((False, exc))

    thread = threading.Thread(target=run, name="netlink")
    thread.start()
    thread.join()
    ok, value = result[0]
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


class NetworkMonitor:
    """Attaches to containers as the registry lists them; hands batches of events to `on_events`.

    Thread use: the ring buffer is drained in the reader's thread, which only copies records
    out (flows decoded, DNS payloads kept raw); each batch goes to the parser thread, which
    parses the DNS in it with scapy (identical payloads once) and hands the batch, in order,
    to the loop. Netlink work runs in worker threads; the flow log, DNS log, name map and
    listening-port profiles live on the loop. With a `store`, ended flows and DNS records are
    also written to its database at each scrape (NetworkHistory).
    """

    def __init__(
        self, config: NetworkConfig, registry: ContainerRegistry, on_events: EventSink,
        *, poll_interval_s: float = 0.5, store: Any = None,
    ) -> None:
        self._config = config
        self._registry = registry
        self._on_events = on_events
        self._poll_interval_s = poll_interval_s
        self._bpf: Any = None
        self._programs: list[tc.TcProgram] = []
        self._reader: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._lock = threading.Lock()
        self._by_ifindex: dict[int, ContainerInfo] = {}
        self._attached: dict[str, tuple[int, list[int]]] = {}  # container id -> (pid, ifindexes)
        self._closing: set[int] = set()  # detached ifindexes whose flows end at the next scrape
        self._clsact_ours: set[int] = set()
        self._skip: dict[str, int] = {}  # container id -> pid not to retry (host net, failure)
        self._flows = FlowLog(config.flow_log_size,
                              int(config.flow_idle_timeout_s * 1_000_000_000))
        self._names = dns.PeerNames()
        self._dns_log: deque[dict[str, Any]] = deque(maxlen=config.flow_log_size)
        self._listen = ListenPorts(config.inbound_learning_s)
        self._listen_changes = []
        self.history = NetworkHistory(
            store, max_rows=config.history_max_rows, max_age_s=config.history_days * 86400,
        ) if store is not None and config.history else None
        self._started_wall_ns = time.time_ns()
        self._parse_queue: queue.SimpleQueue[list[Event] | None] = queue.SimpleQueue()
        self._parse_backlog = 0
        self._parser: threading.Thread | None = None
        self._parse_cache: OrderedDict[bytes, dns.DnsMessage | None] = OrderedDict()
        self.counters: dict[str, int] = dict.fromkeys(
            ("flows_new", "flows_ended", "dns_queries", "dns_responses", "dns_malformed",
             "dns_parsed", "dns_parse_cached", "dns_backlog_dropped", "unknown_ifindex",
             "attach_errors", "host_network", "leftovers_cleaned", "new_inbound_ports"), 0)
        self.dns_capture = dns_capture_size(config.dns_capture_bytes)

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the programs, remove a killed daemon's leftovers, follow the containers."""
        if not self._config.enabled:
            return
        from cauditd.probes.mmap_ringbuf import open_reader

        await asyncio.to_thread(self._load)
        self._started_wall_ns = time.time_ns()
        loop = asyncio.get_running_loop()
        self._parser = threading.Thread(target=self._parse_main, args=(loop,),
                                        name="net-dns-parse", daemon=True)
        self._parser.start()
        self._reader = open_reader(self._bpf, "net_events", self._decode, self._to_parser,
                                   interval=0.005, name="net-ringbuf",
                                   direct=self._config.ringbuf_mmap)
        self._reader.start()
        metrics.PROBES_ATTACHED.labels(PROBE).set(1)
        self._tasks = [create_task(self._follow_containers(), name="net-containers"),
                       create_task(self._scrape_loop(), name="net-flows")]

    async def stop(self) -> None:
        """Detach everywhere, deliver what the kernel still holds, end every flow."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._bpf is None:
            return
        for container_id in list(self._attached):
            await asyncio.to_thread(self.detach, container_id)
        if self._reader is not None:
            await asyncio.to_thread(self._reader.stop)
            await asyncio.sleep(0.05)  # let the reader's last batch reach the parser
            self._reader = None
        if self._parser is not None:
            self._parse_queue.put(None)
            await asyncio.to_thread(self._parser.join, 30)
            await asyncio.sleep(0)  # the parser's last batch runs on the loop
            self._parser = None
        await self.scrape_now(final=True)
        if self.history is not None:
            self.history.close()
        self.poll_lost()
        metrics.PROBES_ATTACHED.labels(PROBE).set(0)
        bpf, self._bpf = self._bpf, None
        bpf.cleanup()

    def _load(self) -> None:
        from bcc import BPF

        from cauditd.probes.bpf import ProbeError, check_environment, source

        check_environment()
        defines = {"NET_RINGBUF_PAGES": 256, "DNS_CAPTURE": self.dns_capture,
                   "FLOW_TABLE_SIZE": 65536}
        try:
            self._bpf = BPF(text=source(["net.c"], defines), cflags=["-Wno-macro-redefined"])
            self._programs = [
                tc.TcProgram(self._bpf.load_func(f"net_{d}", BPF.SCHED_CLS).fd, d)
                for d in ("egress", "ingress")
            ]
        except Exception as exc:
            raise ProbeError(f"loading net.c failed: {exc}") from exc
        cleaned = tc.clean_leftovers()
        self.counters["leftovers_cleaned"] += len(cleaned)
        if cleaned:
            log.info("removed tc filters a previous cauditd left on ifindexes %s", cleaned)

    # -- containers --------------------------------------------------------------------------

    def attach(self, container: ContainerInfo) -> list[int]:
        """Attach to the host-side veths of `container`; the ifindexes (none: host network or
        pid unknown). Blocking netlink work; safe to call from the loop (runs in a thread)."""
        if container.pid <= 0 or self._bpf is None:
            return []
        return _off_loop(lambda: self._attach(container))

    def _attach(self, container: ContainerInfo) -> list[int]:
        pid = container.pid
        try:
            if veth.same_netns_as_host(pid):
                self.counters["host_network"] += 1
                self._skip[container.id] = pid
                return []
            ifindexes = veth.container_net(pid).host_ifindexes
            for ifindex in ifindexes:
                if tc.attach(ifindex, self._programs):
                    self._clsact_ours.add(ifindex)
        except (veth.VethError, tc.TcError, OSError) as exc:
            self.counters["attach_errors"] += 1
            self._skip[container.id] = pid
            log.warning("network: cannot attach to container %s: %s", container.short_id, exc)
            return []
        with self._lock:
            self._attached[container.id] = (pid, ifindexes)
            for ifindex in ifindexes:
                self._by_ifindex[ifindex] = container
                self._closing.discard(ifindex)
            self._listen_changes.append((container.id, pid))
        log.debug("network: container %s on ifindexes %s", container.short_id, ifindexes)
        return ifindexes

    def detach(self, container_id: str) -> None:
        """Remove our filters from the container's veths; its flows end at the next scrape."""
        with self._lock:
            _pid, ifindexes = self._attached.pop(container_id, (0, []))
            self._closing.update(ifindexes)
            self._listen_changes.append((container_id, 0))
        self._skip.pop(container_id, None)

        def remove() -> None:
            for ifindex in ifindexes:
                tc.detach(ifindex, remove_clsact=ifindex in self._clsact_ours)
                self._clsact_ours.discard(ifindex)

        _off_loop(remove)

    def attached(self) -> dict[str, list[int]]:
        """Container id -> host ifindexes we are attached to."""
        with self._lock:
            return {cid: list(ifs) for cid, (_pid, ifs) in self._attached.items()}

    async def _follow_containers(self) -> None:
        while True:
            try:
                await self.sync_containers()
            except Exception:
                log.exception("network: following containers failed; retrying")
            await asyncio.sleep(self._poll_interval_s)

    async def sync_containers(self) -> None:
        """Attach to new containers, detach from gone or restarted ones (poll of the registry)."""
        self._apply_listen_changes()
        self._listen.sample_learning()
        current = {c.id: c for c in self._registry.containers() if not c.is_host}
        for container_id, (pid, _ifs) in list(self._attached.items()):
            info = current.get(container_id)
            if info is None or info.pid != pid or not _alive(pid):
                await asyncio.to_thread(self.detach, container_id)
        for container_id, info in current.items():
            if container_id in self._attached or info.pid <= 0:
                continue
            if self._skip.get(container_id) == info.pid or not _alive(info.pid):
                continue
            await asyncio.to_thread(self._attach, info)
        self._apply_listen_changes()

    _listen_changes: list[tuple[str, int]]  # (container id, pid; 0: gone) from netlink threads

    def _apply_listen_changes(self) -> None:
        with self._lock:
            changes, self._listen_changes = self._listen_changes, []
        for container_id, pid in changes:
            if pid:
                self._listen.track(container_id, pid)
            else:
                self._listen.forget(container_id)

    # -- kernel records (reader thread) ------------------------------------------------------

    def _decode(self, raw: bytes | memoryview) -> Event | None:
        kind, flags_or_caplen, ts_ns = RECORD_HEAD.unpack_from(raw)
        key = FlowKey.unpack(raw[KEY_OFFSET:TAIL_OFFSET])
        length, tcp_flags = RECORD_TAIL.unpack_from(raw, TAIL_OFFSET)
        container = self._by_ifindex.get(key.ifindex)
        if container is None:
            self.counters["unknown_ifindex"] += 1
            return None
        common: dict[str, Any] = dict(
            ts_ns=ts_ns, container=container, ifindex=key.ifindex, direction=key.direction,
            l4proto=key.l4proto, sip=key.sip, sport=key.sport, dip=key.dip, dport=key.dport)
        if kind == REC_FLOW:
            return FlowEvent(type="flow_new", packets=1, bytes=length, tcp_flags=tcp_flags,
                             first_ns=ts_ns, last_ns=ts_ns, **common)
        payload = bytes(raw[PAYLOAD_OFFSET:PAYLOAD_OFFSET
                            + min(flags_or_caplen, self.dns_capture)])
        return PendingDns(type="dns", payload=payload, **common)

    # -- DNS parsing (parser thread) -----------------------------------------------------------

    def _to_parser(self, batch: list[Event]) -> None:
        """A batch from the reader (on the loop): queue it for the parser, in order."""
        dns_records = sum(1 for e in batch if isinstance(e, PendingDns))
        if dns_records and self._parse_backlog + dns_records > PARSE_BACKLOG:
            self.counters["dns_backlog_dropped"] += dns_records
            batch = [e for e in batch if not isinstance(e, PendingDns)]
            dns_records = 0
        if not batch:
            return
        if self._parser is None:  # not running (tests driving _on_batch): parse here
            self._on_batch(self._parse_batch(batch))
            return
        with self._lock:
            self._parse_backlog += dns_records
        self._parse_queue.put(batch)

    def _parse_main(self, loop: asyncio.AbstractEventLoop) -> None:
        while (batch := self._parse_queue.get()) is not None:
            try:
                parsed = self._parse_batch(batch)
            except Exception:
                log.exception("network: parsing a batch of %d records failed", len(batch))
                continue
            finally:
                with self._lock:
                    self._parse_backlog -= sum(1 for e in batch if isinstance(e, PendingDns))
            try:
                loop.call_soon_threadsafe(self._on_batch, parsed)
            except RuntimeError:  # loop closed during shutdown
                return

    def _parse_batch(self, batch: list[Event]) -> list[Event]:
        out: list[Event] = []
        for event in batch:
            if not isinstance(event, PendingDns):
                out.append(event)
                continue
            parsed = self._parse_dns(event)
            if parsed is not None:
                out.append(parsed)
        return out

    def _parse_dns(self, pending: PendingDns) -> DnsEvent | None:
        """Parse one copied DNS payload; a payload seen before (less its id) is not re-parsed."""
        tcp = pending.l4proto == "tcp"
        payload = pending.payload
        head = 2 if tcp else 0
        key = (b"T" if tcp else b"U") + payload[:head] + payload[head + 2:]
        cache = self._parse_cache
        if key in cache:
            msg = cache[key]
            self.counters["dns_parse_cached"] += 1
        else:
            try:
                msg = dns.parse(payload, tcp=tcp)
            except dns.MalformedDns:
                msg = None
            self.counters["dns_parsed"] += 1
            cache[key] = msg
            if len(cache) > PARSE_CACHE_SIZE:
                cache.popitem(last=False)
        if msg is None:
            self.counters["dns_malformed"] += 1
            return None
        dns_id = int.from_bytes(payload[head:head + 2], "big")
        return DnsEvent(
            type="dns_response" if msg.is_response else "dns_query", ts_ns=pending.ts_ns,
            container=pending.container, ifindex=pending.ifindex, direction=pending.direction,
            l4proto=pending.l4proto, sip=pending.sip, sport=pending.sport, dip=pending.dip,
            dport=pending.dport, qname=msg.qname, qtype=msg.qtype,
            rcode=msg.rcode if msg.is_response else "", dns_id=dns_id, answers=msg.answers,
            ttls=msg.ttls)

    # -- on the loop -------------------------------------------------------------------------

    def _on_batch(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, FlowEvent):
                self._flow_opened(event)
            elif isinstance(event, DnsEvent):
                self._dns_seen(event)
        self._deliver(events)

    def _flow_opened(self, event: FlowEvent) -> None:
        self.counters["flows_new"] += 1
        key = FlowKey(event.ifindex, event.direction, event.l4proto, event.sip, event.sport,
                      event.dip, event.dport)
        event.peer_names = self._names.names(event.container.id, key.peer)
        midstream = event.l4proto == "tcp" and not event.tcp_flags & TCP_SYN
        if event.direction == "ingress" and event.l4proto in ("tcp", "udp") and \
                self._listen.first_seen(event.container.id, event.l4proto, event.dport,
                                        lambda: self._answered(key)):
            event.port_first_seen = True
            self.counters["new_inbound_ports"] += 1
        self._flows.opened(FlowRecord(
            container=event.container, key=key, first_ns=event.first_ns, last_ns=event.last_ns,
            packets=1, bytes=event.bytes, tcp_flags=event.tcp_flags, midstream=midstream,
            peer_names=event.peer_names))

    def _answered(self, key: FlowKey) -> bool:
        """The container answered the flow `key` opened: the kernel holds its reverse flow,
        with a SYN-ACK for TCP (a closed port answers RST), any packet for UDP."""
        if self._bpf is None:
            return False
        table = self._bpf["flows"]
        try:
            raw = table[table.Key.from_buffer_copy(key.reverse().pack())]
        except KeyError:
            return False
        stats = FlowStats.unpack(bytes(raw))
        return key.l4proto != "tcp" or stats.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN | TCP_ACK

    def _dns_seen(self, event: DnsEvent) -> None:
        response = event.type == "dns_response"
        self.counters["dns_responses" if response else "dns_queries"] += 1
        if response:
            self._names.learn(event.container.id, dns.DnsMessage(
                dns_id=event.dns_id, is_response=True, qname=event.qname, qtype=event.qtype,
                rcode=event.rcode, answers=event.answers, ttls=event.ttls,
                answer_types=tuple(_answer_type(a) for a in event.answers)))
        c = event.container
        entry: dict[str, Any] = {
            "container": c.short_id, "container_id": c.id, "container_name": c.name,
            "time_ns": event.wall_ns, "type": event.type, "id": event.dns_id,
            "name": event.qname, "qtype": event.qtype, "rcode": event.rcode,
            "answers": list(event.answers), "ttls": list(event.ttls),
            "server": event.dip if event.direction == "egress" else event.sip,
            "proto": event.l4proto,
        }
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
        if self._bpf is None:
            return []
        entries = await asyncio.to_thread(self._read_flows)
        closing = set(self._closing)
        now = time.monotonic_ns()
        by_key = {k: raw for k, _s, raw in entries}
        ending = [(k, s) for k, s, _ in entries if final or k.ifindex in closing]
        staying = [(k, s) for k, s, _ in entries if not (final or k.ifindex in closing)]
        events, done = self._flows.scrape(ending, self._container_of, self._names_of, now,
                                          final=True)
        more, done_more = self._flows.scrape(staying, self._container_of, self._names_of, now)
        events += more
        await asyncio.to_thread(self._delete_flows, [by_key[k] for k in done + done_more])
        with self._lock:
            for ifindex in closing:
                if ifindex not in self._closing:
                    continue
                self._closing.discard(ifindex)
                container = self._by_ifindex.pop(ifindex, None)
                if container is not None and container.id not in self._attached:
                    self._names.forget(container.id)
        self.counters["flows_ended"] += len(events)
        ended, self._flows.just_ended = self._flows.just_ended, []
        if self.history is not None:
            for record in ended:
                self.history.add_flow(record.to_dict(_MONO_TO_WALL_NS))
            await self.history.flush()
        self._deliver(list(events))
        return events

    def _container_of(self, ifindex: int) -> ContainerInfo | None:
        return self._by_ifindex.get(ifindex)

    def _names_of(self, container: ContainerInfo, address: str) -> tuple[str, ...]:
        return self._names.names(container.id, address)

    def peer_names(self, container: ContainerInfo, address: str) -> tuple[str, ...]:
        """Names the container resolved to `address` (rules' fd.sip.name and friends)."""
        return self._names.names(container.id, address)

    def _read_flows(self) -> list[tuple[FlowKey, FlowStats, Any]]:
        table = self._bpf["flows"]
        return [(FlowKey.unpack(bytes(k)), FlowStats.unpack(bytes(v)), k)
                for k, v in table.items()]

    def _delete_flows(self, keys: list[Any]) -> None:
        table = self._bpf["flows"]
        for key in keys:
            with contextlib.suppress(KeyError):  # the LRU may have evicted it meanwhile
                del table[key]

    # -- reading -----------------------------------------------------------------------------

    def lost(self) -> dict[str, int]:
        """Records the kernel could not hand over: new-flow records and DNS copies."""
        if self._bpf is None:
            return dict(self._lost)
        values = self._bpf["net_lost"]
        return {"flow": sum(values[values.Key(0)]), "dns": sum(values[values.Key(1)])}

    _lost: dict[str, int] = {"flow": 0, "dns": 0}

    def poll_lost(self) -> int:
        """Add new kernel-side losses to the metric; returns how many since the last call."""
        now = self.lost()
        delta = sum(now.values()) - sum(self._lost.values())
        if delta > 0:
            metrics.EVENTS_LOST.labels(PROBE).inc(delta)
        self._lost = now
        return max(delta, 0)

    def flows(self, filters: Mapping[str, Any] | Any = None) -> list[dict[str, Any]]:
        """Flows, newest first: filters container (id, short id or name), since (wall ns),
        peer (address or CIDR), port (either end), name (a peer name or a parent domain)."""
        f = _Filter.of(filters)
        found = [r.to_dict(_MONO_TO_WALL_NS) for r in self._flows.query(f.flow_matches, f.limit)]
        oldest = self._flows.oldest_ns()
        horizon = max(self._started_wall_ns,
                      oldest + _MONO_TO_WALL_NS if oldest is not None else 0)
        older = self._from_history("net_flows", f, f.flow_doc_matches, horizon, len(found))
        seen = {_flow_identity(d) for d in found}
        found += [d for d in older if _flow_identity(d) not in seen]
        found.sort(key=lambda d: d["first_ns"], reverse=True)
        return found[: f.limit]

    def dns(self, filters: Mapping[str, Any] | Any = None) -> list[dict[str, Any]]:
        """DNS queries and responses, newest first, with the same filters as flows()."""
        f = _Filter.of(filters)
        found = [d for d in reversed(self._dns_log) if f.dns_matches(d)][: f.limit]
        full = len(self._dns_log) == self._dns_log.maxlen
        horizon = max(self._started_wall_ns, self._dns_log[0]["time_ns"] if full else 0)
        found += self._from_history("net_dns", f, f.dns_matches, horizon, len(found))
        return found[: f.limit]

    def _from_history(self, table: str, f: _Filter, match: Callable[[dict[str, Any]], bool],
                      horizon_ns: int, have: int) -> list[dict[str, Any]]:
        """Records older than what memory holds (`horizon_ns`): from the database, when the
        request reaches back past it and memory did not fill the limit."""
        if self.history is None or have >= f.limit or \
                (f.since_ns is not None and f.since_ns >= horizon_ns):
            return []
        return self.history.query(table, match, limit=f.limit - have, since_ns=f.since_ns,
                                  before_ns=horizon_ns)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            attached = len(self._attached)
            interfaces = sum(len(ifs) for _pid, ifs in self._attached.values())
        return {
            **self.counters, "lost": self.lost(), "containers_attached": attached,
            "interfaces_attached": interfaces, "flows_active": self._flows.active(),
            "flow_log": len(self._flows.records), "dns_log": len(self._dns_log),
            "peer_addresses": len(self._names),
            "dns_parse_backlog": self._parse_backlog,
            "history_written": dict(self.history.written) if self.history else {},
            "decode_errors": self._reader.decode_errors if self._reader else 0,
        }


def _flow_identity(d: dict[str, Any]) -> tuple[Any, ...]:
    return (d["container_id"], d["direction"], d["proto"], d["sip"], d["sport"], d["dip"],
            d["dport"], d["first_ns"])


def _alive(pid: int) -> bool:
    """The process exists (a stopped container's pid is gone; the registry keeps it until
    the container is removed)."""
    return os.path.isdir(f"/proc/{pid}")  # procfs: never blocks on disk


def _answer_type(answer: str) -> str:
    try:
        return "AAAA" if ipaddress.ip_address(answer).version == 6 else "A"
    except ValueError:
        return "CNAME"


class _Filter:
    """The filters of /v1/flows and /v1/dns, from a dict or a NetworkFilter-like object."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self.container = values.get("container")
        since = values.get("since_ns", values.get("since"))
        self.since_ns = int(since) if since is not None else None
        peer = values.get("peer")
        self.peer = ipaddress.ip_network(str(peer), strict=False) if peer else None
        port = values.get("port")
        self.port = int(port) if port is not None else None
        name = values.get("name")
        self.name = str(name).rstrip(".").lower() if name else None
        self.limit = int(values.get("limit") or 100)

    @classmethod
    def of(cls, filters: Mapping[str, Any] | Any) -> _Filter:
        if filters is None:
            return cls({})
        if isinstance(filters, Mapping):
            return cls(filters)
        names = ("container", "since_ns", "peer", "port", "name", "limit")
        return cls({n: getattr(filters, n) for n in names if getattr(filters, n, None) is not None})

    def _container_ok(self, full_id: str, name: str) -> bool:
        c = self.container
        return c is None or c == name or (len(c) >= 4 and full_id.startswith(c))

    def _name_ok(self, names: list[str] | tuple[str, ...]) -> bool:
        n = self.name
        return n is None or any(x == n or x.endswith("." + n) for x in names)

    def _peer_ok(self, address: str) -> bool:
        if self.peer is None:
            return True
        try:
            return ipaddress.ip_address(address) in self.peer
        except ValueError:
            return False

    def flow_matches(self, r: FlowRecord) -> bool:
        k = r.key
        return (self._container_ok(r.container.id, r.container.name)
                and (self.since_ns is None or (r.last_ns or r.first_ns) + _MONO_TO_WALL_NS
                     >= self.since_ns)
                and self._peer_ok(k.peer)
                and (self.port is None or self.port in (k.sport, k.dport))
                and self._name_ok(r.peer_names))

    def flow_doc_matches(self, d: dict[str, Any]) -> bool:
        """flow_matches for a flow as to_dict() wrote it (from the database)."""
        return (self._container_ok(d["container_id"], d["container_name"])
                and (self.since_ns is None or d["last_ns"] >= self.since_ns)
                and self._peer_ok(d["peer"])
                and (self.port is None or self.port in (d["sport"], d["dport"]))
                and self._name_ok(d["peer_names"]))

    def dns_matches(self, d: dict[str, Any]) -> bool:
        return (self._container_ok(d["container_id"], d["container_name"])
                and (self.since_ns is None or d["time_ns"] >= self.since_ns)
                and (self.peer is None or self._peer_ok(d["server"])
                     or any(self._peer_ok(a) for a in d["answers"]))
                and (self.port is None or self.port == 53)
                and self._name_ok([d["name"], *d["answers"]]))
