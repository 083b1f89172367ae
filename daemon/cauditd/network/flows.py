"""The flow log: kernel flow-table entries (typed by probes.net_records) attributed to
containers, aged into flow_end events, and kept in bounded memory for GET /v1/flows."""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from cauditd.events import ContainerInfo, FlowEvent
from cauditd.probes.net_records import FLOW_MIDSTREAM, FLOW_REPLY, FlowKey, FlowStats

TCP_FIN, TCP_SYN, TCP_RST, TCP_PSH, TCP_ACK = 0x01, 0x02, 0x04, 0x08, 0x10
TCP_FLAG_NAMES = ((TCP_FIN, "FIN"), (TCP_SYN, "SYN"), (TCP_RST, "RST"), (TCP_PSH, "PSH"),
                  (TCP_ACK, "ACK"), (0x20, "URG"), (0x40, "ECE"), (0x80, "CWR"))
FIN_LINGER_NS = 2_000_000_000  # a closed TCP flow ends this long after its last packet


@functools.cache  # 256 values at most (a byte of flags)
def tcp_flag_text(flags: int) -> str:
    return ",".join(name for bit, name in TCP_FLAG_NAMES if flags & bit)


@dataclass(slots=True)
class FlowRecord:
    """One flow in the log, attributed to a container; counters follow the kernel's. An
    aggregate (key.served) counts a client's connections to a port the container serves."""

    container: ContainerInfo
    key: FlowKey
    first_ns: int
    last_ns: int = 0
    packets: int = 0
    bytes: int = 0
    tcp_flags: int = 0
    connections: int = 0
    reply: bool = False
    midstream: bool = False
    ended: bool = False
    peer_names: tuple[str, ...] = ()

    @property
    def service_port(self) -> int:
        """The port the conversation is about: the destination of an opening flow."""
        return self.key.sport if self.reply else self.key.dport

    def to_dict(self, mono_to_wall_ns: int) -> dict[str, Any]:
        k = self.key
        return {
            "container": self.container.short_id, "container_id": self.container.id,
            "container_name": self.container.name, "direction": k.direction,
            "proto": k.l4proto, "sip": k.sip, "sport": k.sport, "dip": k.dip, "dport": k.dport,
            "peer": k.peer, "port": self.service_port, "peer_names": list(self.peer_names),
            "packets": self.packets, "bytes": self.bytes,
            "tcp_flags": tcp_flag_text(self.tcp_flags), "reply": self.reply,
            "served": k.served, "connections": self.connections,
            "midstream": self.midstream, "active": not self.ended,
            "first_ns": self.first_ns + mono_to_wall_ns,
            "last_ns": (self.last_ns or self.first_ns) + mono_to_wall_ns,
        }

    def event(self, kind: str, ts_ns: int) -> FlowEvent:
        k = self.key
        return FlowEvent(
            type=kind, ts_ns=ts_ns, container=self.container, ifindex=k.ifindex,
            direction=k.direction, l4proto=k.l4proto, sip=k.sip, sport=k.sport, dip=k.dip,
            dport=k.dport, packets=self.packets, bytes=self.bytes, tcp_flags=self.tcp_flags,
            first_ns=self.first_ns, last_ns=self.last_ns or self.first_ns,
            peer_names=self.peer_names, connections=self.connections,
        )


@dataclass
class FlowLog:
    """Flows by (key, first_ns), oldest evicted first beyond `capacity`.

    A plain dict with its own eviction queue, not an OrderedDict: iterating an OrderedDict's
    values looks every key up again, and hashing 10,000 flow keys made each GET /v1/stats
    and /v1/flows cost ~10 ms of the loop. The count of active records is kept as they change.
    """

    capacity: int
    idle_timeout_ns: int
    records: dict[tuple[FlowKey, int], FlowRecord] = field(default_factory=dict)
    ended_total: int = 0
    evicted: int = 0  # records pushed out by newer ones (the kernel table still has active ones)
    just_ended: list[FlowRecord] = field(default_factory=list)  # drained by the monitor
    _order: deque[tuple[FlowKey, int]] = field(default_factory=deque, repr=False)
    _active: int = 0

    def opened(self, record: FlowRecord) -> None:
        """A flow the kernel reported on its first packet."""
        self._put(record)

    def scrape(
        self,
        entries: Iterable[tuple[FlowKey, FlowStats]],
        container_of: Callable[[int], ContainerInfo | None],
        names_of: Callable[[ContainerInfo, str], tuple[str, ...]],
        now_ns: int,
        *,
        final: bool = False,
    ) -> tuple[list[FlowEvent], list[FlowKey]]:
        """Fold kernel entries in; flow_end events for flows that ended, and their keys to
        delete from the kernel table (all of them when `final`)."""
        events: list[FlowEvent] = []
        done: list[FlowKey] = []
        for key, stats in entries:
            record = self._record(key, stats, container_of, names_of)
            if record is None:
                done.append(key)  # an interface we no longer watch
                continue
            record.packets, record.bytes = stats.packets, stats.bytes
            record.last_ns, record.tcp_flags = stats.last_ns, stats.tcp_flags
            record.connections = stats.connections
            if not (final or self._ended(key, stats, now_ns)):
                continue
            done.append(key)
            if record.ended:  # its kernel entry outlived a failed delete: it ends once
                continue
            record.ended = True
            self._active -= 1
            self.ended_total += 1
            self.just_ended.append(record)
            events.append(record.event("flow_end", stats.last_ns))
        return events, done

    def _ended(self, key: FlowKey, stats: FlowStats, now_ns: int) -> bool:
        """Idle for the timeout, or closed (FIN/RST) and idle FIN_LINGER_NS. An aggregate is
        never closed (its connections are), and ends each idle timeout while its clients keep
        coming: the rules on flow_end see its totals that often, and the next packet starts
        the next aggregate (what the kernel counted between the read and the delete is lost)."""
        idle = now_ns - stats.last_ns
        if key.served:
            return idle >= self.idle_timeout_ns or now_ns - stats.first_ns >= self.idle_timeout_ns
        closed = stats.tcp_flags & (TCP_FIN | TCP_RST)
        return idle >= self.idle_timeout_ns or bool(closed and idle >= FIN_LINGER_NS)

    def _record(
        self, key: FlowKey, stats: FlowStats,
        container_of: Callable[[int], ContainerInfo | None],
        names_of: Callable[[ContainerInfo, str], tuple[str, ...]],
    ) -> FlowRecord | None:
        record = self.records.get((key, stats.first_ns))
        if record is not None:
            return record
        container = container_of(key.ifindex)
        if container is None:
            return None
        record = FlowRecord(
            container=container, key=key, first_ns=stats.first_ns,
            reply=bool(stats.flags & FLOW_REPLY), midstream=bool(stats.flags & FLOW_MIDSTREAM),
            peer_names=names_of(container, key.peer),
        )
        self._put(record)
        return record

    def _put(self, record: FlowRecord) -> None:
        key = (record.key, record.first_ns)
        replaced = self.records.get(key)
        if replaced is None:
            self._order.append(key)
        elif not replaced.ended:
            self._active -= 1
        self.records[key] = record
        if not record.ended:
            self._active += 1
        while len(self.records) > self.capacity:
            gone = self.records.pop(self._order.popleft())
            self.evicted += 1
            if not gone.ended:
                self._active -= 1

    def oldest_ns(self) -> int | None:
        """First-packet time of the oldest flow still in memory (None when empty)."""
        return min((r.first_ns for r in self.records.values()), default=None) \
            if len(self.records) >= self.capacity else None

    def active(self) -> int:
        return self._active

    def query(self, match: Callable[[FlowRecord], bool], limit: int) -> list[FlowRecord]:
        """Newest first (by first packet), at most `limit`."""
        found = [r for r in self.records.values() if match(r)]
        found.sort(key=lambda r: r.first_ns, reverse=True)
        return found[:limit]
