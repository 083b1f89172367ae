"""PeerNames (net.peer_names): names learnt only from answers to the container's own queries,
on a fake clock, with every map bounded."""

from __future__ import annotations

from dataclasses import replace

import pytest
from scapy.layers.dns import DNS, DNSQR, DNSRR

from cauditd.events import DnsEvent
from cauditd.network import dns, names
from cauditd.network.names import PeerNames
from tests.network.test_dns import response

CLIENT, SERVER = "10.213.0.2", "10.213.0.53"
QUERY = DnsEvent(type="dns_query", ts_ns=0, direction="egress", l4proto="udp", sip=CLIENT,
                 sport=40000, dip=SERVER, dport=53, dns_id=7, qname="example.org", qtype="A")
ANSWER = DnsEvent(type="dns_response", ts_ns=0, direction="ingress", l4proto="udp", sip=SERVER,
                  sport=53, dip=CLIENT, dport=40000, dns_id=7, qname="example.org", qtype="A",
                  rcode="NOERROR", answers=("www.example.org", "10.213.0.9"), ttls=(60, 30))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_answer_to_a_query_names_its_addresses() -> None:
    peers = PeerNames()
    peers.query("c1", QUERY)
    assert peers.answer("c1", ANSWER)
    assert peers.names("c1", "10.213.0.9") == ("example.org", "www.example.org")
    assert peers.names("c2", "10.213.0.9") == ()  # per container
    assert not peers.answer("c1", ANSWER)  # once: a repeat answers nothing
    assert peers.counters["dns_unmatched"] == 1


@pytest.mark.parametrize("change", [
    {"dns_id": 8}, {"qname": "other.org"}, {"sip": "10.213.0.66"}, {"dport": 40001},
    {"l4proto": "tcp"},
])
def test_answer_that_matches_no_query_teaches_nothing(change: dict[str, object]) -> None:
    peers = PeerNames()
    peers.query("c1", QUERY)
    assert not peers.answer("c1", replace(ANSWER, **change))  # type: ignore[arg-type]
    assert peers.names("c1", "10.213.0.9") == ()
    assert not peers.answer("c2", ANSWER)  # another container's query


def test_unanswered_queries_expire_and_are_bounded() -> None:
    clock = Clock()
    peers = PeerNames(max_pending=4, clock=clock)
    peers.query("c1", QUERY)
    clock.now += names.QUERY_TIMEOUT_S + 1
    assert not peers.answer("c1", ANSWER)
    for dns_id in range(100):
        peers.query("c1", replace(QUERY, dns_id=dns_id))
    assert peers.pending() == 4 and peers.counters["dns_pending_evicted"] == 96
    assert peers.answer("c1", replace(ANSWER, dns_id=99))
    assert not peers.answer("c1", replace(ANSWER, dns_id=0))  # evicted


def test_names_expire() -> None:
    clock = Clock()
    peers = PeerNames(clock=clock)
    peers.learn("c1", dns.parse(response()))
    assert peers.names("c1", "fd00::9") == ("example.org", "www.example.org")
    clock.now += names.MIN_NAME_TTL_S + 1
    assert peers.names("c1", "10.213.0.9") == ()


def test_addresses_per_container_bounded() -> None:
    peers = PeerNames(max_addresses=3)
    for i in range(10):
        raw = bytes(DNS(id=i, qr=1, qd=[DNSQR(qname=f"h{i}.test")],
                        an=[DNSRR(rrname=f"h{i}.test", type="A", rdata=f"10.213.0.{i}")]))
        peers.learn("c", dns.parse(raw))
    assert len(peers) == 3 and peers.names("c", "10.213.0.9") == ("h9.test",)


def test_names_per_address_bounded() -> None:
    """A server (or a container's own resolver) answering one address under ever new names
    does not grow the address's entry."""
    peers = PeerNames(max_names=4)
    for i in range(50):
        peers.query("c", replace(QUERY, dns_id=i, qname=f"n{i}.test"))
        assert peers.answer("c", replace(ANSWER, dns_id=i, qname=f"n{i}.test",
                                         answers=("10.213.0.9",), ttls=(600 + i,)))
    assert peers.names("c", "10.213.0.9") == tuple(sorted(f"n{i}.test" for i in range(46, 50)))
    assert peers.counters["peer_names_evicted"] == 46
