"""The DNS parsing stage: a message's direction, not its QR bit, says whether it is a query."""

from __future__ import annotations

import pytest
from scapy.layers.dns import DNS, DNSQR, DNSRR

from cauditd.events import Event
from cauditd.network.dnsparse import DnsParser
from cauditd.probes.net_records import DnsCapture


def capture(direction: str, qr: int) -> DnsCapture:
    msg = DNS(id=3, qr=qr, qd=[DNSQR(qname="x" * 60 + ".test")],
              an=[DNSRR(rrname="a.test", type="A", rdata="10.213.0.9")] if qr else [])
    ends = ("10.213.0.2", 40000, "10.213.0.53", 53)
    sip, sport, dip, dport = ends if direction == "egress" else (*ends[2:], *ends[:2])
    return DnsCapture(type="dns", ts_ns=1, ifindex=4, direction=direction, l4proto="udp",
                      sip=sip, sport=sport, dip=dip, dport=dport, payload=bytes(msg))


@pytest.mark.parametrize(("direction", "qr", "expected", "odd"), [
    ("egress", 0, "dns_query", 0),
    ("egress", 1, "dns_query", 1),  # a "response" the container sends: still its query
    ("ingress", 1, "dns_response", 0),
    ("ingress", 0, None, 1),  # a "query" from a server's port: answers nothing
])
def test_direction_decides(direction: str, qr: int, expected: str | None, odd: int) -> None:
    parser = DnsParser(lambda _batch: None)
    event = parser.parse(capture(direction, qr))
    assert (event.type if event is not None else None) == expected
    assert parser.counters["dns_odd_qr"] == odd
    if event is not None and expected == "dns_query":
        assert event.rcode == ""


def test_unstarted_parser_hands_batches_on_in_order() -> None:
    got: list[list[Event]] = []
    parser = DnsParser(got.append)
    parser.submit([capture("egress", 0), capture("ingress", 0), capture("ingress", 1)])
    assert [e.type for e in got[0]] == ["dns_query", "dns_response"]
