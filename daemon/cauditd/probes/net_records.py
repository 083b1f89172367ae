"""Decoders for probes/net.c: its ring-buffer records and its flow table's keys and values.

The only place that knows net.c's C layouts (struct flow_key, flow_stats, flow_record,
dns_record). Past it, flows are typed values (FlowKey, FlowStats, FlowEvent) and a DNS
packet is a DnsCapture whose payload only the DNS parser (cauditd.network.dns) reads.
Events come out without their container: the network monitor attributes them by ifindex.
"""

from __future__ import annotations

import functools
import ipaddress
import struct
from dataclasses import dataclass
from typing import NamedTuple

from cauditd.events import FlowEvent, NetworkEvent

Record = bytes | memoryview

FLOW_KEY = struct.Struct("<IBBBB16s16sHH")  # struct flow_key
FLOW_STATS = struct.Struct("<QQQQIB3xQ")  # struct flow_stats
RECORD_HEAD = struct.Struct("<IIQ")  # kind, flags (flow) or caplen (dns), ts_ns
RECORD_TAIL = struct.Struct("<IB3x")  # len, tcp_flags
KEY_OFFSET = RECORD_HEAD.size
TAIL_OFFSET = KEY_OFFSET + FLOW_KEY.size
PAYLOAD_OFFSET = TAIL_OFFSET + RECORD_TAIL.size
REC_FLOW, REC_DNS = 1, 2
LOST_KINDS = ("flow", "dns")  # net_lost[] indexes: new-flow records, DNS copies
DIRECTIONS = {1: "egress", 2: "ingress"}
PROTOS = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6"}
DIRECTION_NUMBERS = {name: number for number, name in DIRECTIONS.items()}
PROTO_NUMBERS = {name: number for number, name in PROTOS.items()}
FLOW_REPLY = 1  # flow_stats.flags: the reverse flow was seen first (an answer)
FLOW_MIDSTREAM = 2  # a TCP flow first seen without its SYN
MAX_DNS_CAPTURE = 4096
RawBytes = bytes  # FlowStats has a field named bytes


# A flow table holds many entries per address (a server's clients, a client's connections):
# converting each address once, not once per entry per scrape. Bounded: addresses come from
# packets, which anyone can forge.
@functools.lru_cache(maxsize=4096)
def address_text(raw: bytes) -> str:
    """An IPv4 (4 bytes) or IPv6 (16 bytes) address as text."""
    return str(ipaddress.ip_address(raw))


@functools.lru_cache(maxsize=4096)
def address_bytes(text: str) -> tuple[int, bytes]:
    """An address's IP version and its 16 bytes as struct flow_key holds them."""
    address = ipaddress.ip_address(text)
    return address.version, address.packed.ljust(16, b"\0")


def _number(numbers: dict[str, int], text: str) -> int:
    """A direction's or protocol's number from its name, or from the number unpack() wrote
    for one it has no name for (str(n))."""
    number = numbers.get(text)
    return int(text) if number is None else number


class FlowKey(NamedTuple):
    """A flow as the kernel keys it: interface, the container's direction, and the 5-tuple;
    `served` for an aggregate (a client's connections to a port the container serves: the
    client's port is 0).

    A NamedTuple rather than a frozen dataclass: a scrape makes one per kernel entry and looks
    each up in the flow log, and a tuple is built and hashed in C (a frozen dataclass's
    __init__ sets each field through object.__setattr__, its __hash__ builds a tuple first)."""

    ifindex: int
    direction: str
    l4proto: str
    sip: str
    sport: int
    dip: str
    dport: int
    served: bool = False

    @classmethod
    def unpack(cls, raw: Record) -> FlowKey:
        ifindex, direction, family, proto, served, saddr, daddr, sport, dport = FLOW_KEY.unpack(
            raw[: FLOW_KEY.size])
        size = 4 if family == 4 else 16
        return cls(ifindex, DIRECTIONS.get(direction) or str(direction),
                   PROTOS.get(proto) or str(proto), address_text(saddr[:size]), sport,
                   address_text(daddr[:size]), dport, served == 1)

    def pack(self) -> bytes:
        """The kernel's struct flow_key for this flow (a map key)."""
        version, sip = address_bytes(self.sip)
        _, dip = address_bytes(self.dip)
        return FLOW_KEY.pack(
            self.ifindex, _number(DIRECTION_NUMBERS, self.direction), version,
            _number(PROTO_NUMBERS, self.l4proto), int(self.served), sip, dip, self.sport,
            self.dport)

    def reverse(self) -> FlowKey:
        """The flow of the answers: same interface, the other direction, ends swapped."""
        return FlowKey(self.ifindex, "ingress" if self.direction == "egress" else "egress",
                       self.l4proto, self.dip, self.dport, self.sip, self.sport, self.served)

    @property
    def peer(self) -> str:
        """The other end's address (not the container's)."""
        return self.dip if self.direction == "egress" else self.sip


class FlowStats(NamedTuple):
    """Counters of one kernel flow entry."""

    packets: int
    bytes: int
    first_ns: int
    last_ns: int
    flags: int
    tcp_flags: int
    connections: int = 0  # an aggregate's (FlowKey.served) connections

    @classmethod
    def unpack(cls, raw: RawBytes) -> FlowStats:
        stats = cls._make(FLOW_STATS.unpack(raw[: FLOW_STATS.size]))
        # last_ns is the kernel's coarse clock, which can read up to a tick before the precise
        # first_ns of the same flow (probes/net.c add_packet)
        return stats if stats.last_ns >= stats.first_ns else stats._replace(last_ns=stats.first_ns)


@dataclass(slots=True, kw_only=True)
class DnsCapture(NetworkEvent):
    """A DNS packet the probe copied (the first `caplen` bytes of its UDP/TCP payload), not
    parsed yet: the network monitor's DNS parser turns it into a DnsEvent, or counts it."""

    payload: bytes = b""


def dns_capture_size(configured: int) -> int:
    """The kernel's DNS copy size (DNS_CAPTURE): the configured bytes rounded up to a power
    of two, between 64 and MAX_DNS_CAPTURE."""
    size = 64
    while size < min(max(configured, 64), MAX_DNS_CAPTURE):
        size *= 2
    return size


def decode(raw: Record) -> FlowEvent | DnsCapture | None:
    """A net_events record: a flow's first packet (flow_new) or a DNS copy; None if unknown."""
    kind, flags_or_caplen, ts_ns = RECORD_HEAD.unpack_from(raw)
    k = FlowKey.unpack(raw[KEY_OFFSET:TAIL_OFFSET])
    length, tcp_flags = RECORD_TAIL.unpack_from(raw, TAIL_OFFSET)
    if kind == REC_FLOW:
        return FlowEvent(
            type="flow_new", ts_ns=ts_ns, ifindex=k.ifindex, direction=k.direction,
            l4proto=k.l4proto, sip=k.sip, sport=k.sport, dip=k.dip, dport=k.dport,
            packets=1, bytes=length, tcp_flags=tcp_flags, first_ns=ts_ns, last_ns=ts_ns)
    if kind == REC_DNS:
        end = PAYLOAD_OFFSET + min(flags_or_caplen, MAX_DNS_CAPTURE)
        return DnsCapture(
            type="dns", ts_ns=ts_ns, ifindex=k.ifindex, direction=k.direction,
            l4proto=k.l4proto, sip=k.sip, sport=k.sport, dip=k.dip, dport=k.dport,
            payload=bytes(raw[PAYLOAD_OFFSET:end]))
    return None


def flow_key_of(event: NetworkEvent) -> FlowKey:
    """The kernel's key of the flow an event belongs to."""
    return FlowKey(event.ifindex, event.direction, event.l4proto, event.sip, event.sport,
                   event.dip, event.dport)
