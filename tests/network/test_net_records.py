"""probes.net_records: net.c's record layouts become typed events (built here as the C structs
lay them out, field by field)."""

from __future__ import annotations

import struct

import pytest

from cauditd.events import FlowEvent
from cauditd.probes import net_records
from cauditd.probes.net_records import DnsCapture, FlowKey, dns_capture_size

KEY = FlowKey(9, "egress", "udp", "10.1.2.3", 40000, "10.1.2.53", 53)


def record(kind: int, flags_or_caplen: int, payload: bytes = b"") -> bytes:
    head = struct.pack("<IIQ", kind, flags_or_caplen, 123_456)
    return head + KEY.pack() + struct.pack("<IB3x", 77, 0x12) + payload


def test_flow_record_is_a_flow_new_without_container() -> None:
    event = net_records.decode(record(net_records.REC_FLOW, 0))
    assert isinstance(event, FlowEvent) and event.type == "flow_new"
    assert (event.ifindex, event.direction, event.l4proto, event.sip, event.sport, event.dip,
            event.dport) == (9, "egress", "udp", "10.1.2.3", 40000, "10.1.2.53", 53)
    assert (event.ts_ns, event.bytes, event.tcp_flags, event.packets) == (123_456, 77, 0x12, 1)
    assert event.container.is_host  # the monitor attributes it by ifindex
    assert net_records.flow_key_of(event) == KEY


def test_dns_record_keeps_caplen_bytes_of_payload() -> None:
    payload = bytes(range(256)) * 2
    event = net_records.decode(memoryview(record(net_records.REC_DNS, 100, payload)))
    assert isinstance(event, DnsCapture) and event.payload == payload[:100]


def test_unknown_kind_is_skipped() -> None:
    assert net_records.decode(record(7, 0)) is None


def test_flow_stats_never_end_before_they_begin() -> None:
    """last_ns is the kernel's coarse clock, first_ns the precise one: a flow's second packet
    within a tick of its first reads as earlier, and is reported as the first's time."""
    raw = net_records.FLOW_STATS.pack(3, 180, 5_000_000, 4_000_000, 0, 0x12, 0)
    stats = net_records.FlowStats.unpack(raw)
    assert (stats.packets, stats.first_ns, stats.last_ns) == (3, 5_000_000, 5_000_000)
    later = net_records.FlowStats.unpack(net_records.FLOW_STATS.pack(3, 180, 5, 9, 0, 0, 0))
    assert (later.first_ns, later.last_ns) == (5, 9)


@pytest.mark.parametrize(("configured", "size"), [(0, 64), (64, 64), (65, 128), (512, 512),
                                                  (100_000, 4096)])
def test_dns_capture_size_is_a_power_of_two(configured: int, size: int) -> None:
    assert dns_capture_size(configured) == size


@pytest.mark.parametrize("served", [0, 1])
@pytest.mark.parametrize("family, size", [(4, 4), (6, 16)])
@pytest.mark.parametrize("direction, proto", [(1, 6), (2, 17), (2, 0), (1, 47), (2, 255), (3, 58)])
def test_every_kernel_key_packs_back_to_its_bytes(
        family: int, size: int, direction: int, proto: int, served: int) -> None:
    """The flow table is cleaned by the keys the scrape unpacked: a protocol with no name here
    (0, IPv6 hop-by-hop: an MLD report; GRE) must pack back to the kernel's very bytes, or
    its flow is never deleted and ends again at every scrape."""
    saddr = bytes(range(1, size + 1)).ljust(16, b"\0")
    daddr = bytes(range(100, 100 + size)).ljust(16, b"\0")
    raw = net_records.FLOW_KEY.pack(17370, direction, family, proto, served, saddr, daddr, 0, 53)
    key = FlowKey.unpack(raw)
    assert key.pack() == raw and key.served == bool(served)
