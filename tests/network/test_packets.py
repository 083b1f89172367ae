"""probes/net.c's header parsing, on crafted frames: the real programs run by the kernel
(BPF_PROG_TEST_RUN, on the loopback device: no interface of ours, no traffic), then the flow
table read as the daemon reads it. Well-formed packets of every shape the parser walks, and the
ones a hostile container can send from a raw socket (cut headers, IP options, fragments). A
frame cut inside its IP header cannot be tested so: the kernel refuses to test-run it (EINVAL)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_NOP
from scapy.layers.inet6 import ICMPv6ND_NS, IPv6
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Packet, Raw

from cauditd.network.probes import NetProbes, ServedMode
from cauditd.probes.bpf import prog_test_run
from cauditd.probes.net_records import FlowKey, FlowStats

LOOPBACK = 1  # the test run's device
CONTAINER, PEER = "10.0.0.2", "10.0.0.3"
CONTAINER6, PEER6 = "fd00::2", "fd00::3"


class Probes:
    """net.c loaded, its programs run on frames as if the container sent or received them."""

    def __init__(self, probes: NetProbes) -> None:
        self._probes = probes
        self._fds = {p.direction: p.fd for p in probes.programs}

    def send(self, frame: Packet | bytes, times: int = 1, direction: str = "egress") -> None:
        prog_test_run(self._fds[direction], bytes(frame), times)

    def flows(self) -> dict[FlowKey, FlowStats]:
        return dict(self._probes.read_flows())


@pytest.fixture
def probes(ebpf: None) -> Iterator[Probes]:
    loaded = NetProbes(dns_capture=512, ringbuf_mmap=False)
    loaded.load()
    loaded.set_served(ServedMode.AGGREGATE)
    try:
        yield Probes(loaded)
    finally:
        loaded.close()


def egress(proto: str, sport: int, dport: int, v6: bool = False) -> FlowKey:
    src, dst = (CONTAINER6, PEER6) if v6 else (CONTAINER, PEER)
    return FlowKey(LOOPBACK, "egress", proto, src, sport, dst, dport)


def test_tcp_counts_every_packet_and_byte(probes: Probes) -> None:
    frame = Ether() / IP(src=CONTAINER, dst=PEER) / TCP(sport=40000, dport=443, flags="S")
    probes.send(frame, times=3)
    stats = probes.flows()[egress("tcp", 40000, 443)]
    assert (stats.packets, stats.bytes) == (3, 3 * len(bytes(frame)))


def test_ip_options_move_the_ports(probes: Probes) -> None:
    """The TCP header starts after the options (ihl 6): ports read at a fixed offset would be
    the options' bytes."""
    ip = IP(src=CONTAINER, dst=PEER, options=[IPOption_NOP()] * 4)
    probes.send(Ether() / ip / TCP(sport=40000, dport=443, flags="S"))
    assert bytes(ip)[0] == 0x46
    assert list(probes.flows()) == [egress("tcp", 40000, 443)]


def test_ipv6_udp(probes: Probes) -> None:
    probes.send(Ether() / IPv6(src=CONTAINER6, dst=PEER6) / UDP(sport=40001, dport=9999)
                / Raw(b"x" * 40))
    assert list(probes.flows()) == [egress("udp", 40001, 9999, v6=True)]


def test_a_cut_transport_header_is_counted_without_ports(probes: Probes) -> None:
    """An IPv4 packet that says TCP but holds 8 of the header's 14 bytes the parser reads:
    counted (the interface carried it), ports unknown."""
    frame = bytes(Ether() / IP(src=CONTAINER, dst=PEER, proto=6) / Raw(b"\x9c\x40\x01\xbb" * 2))
    probes.send(frame)
    assert list(probes.flows()) == [egress("tcp", 0, 0)]


def test_later_fragments_have_no_ports(probes: Probes) -> None:
    """A fragment after the first carries payload where a header would be: its bytes are never
    read as ports (the first fragment's are)."""
    ip = IP(src=CONTAINER, dst=PEER, frag=100)
    probes.send(Ether() / ip / UDP(sport=40001, dport=53) / Raw(b"y" * 32))
    assert list(probes.flows()) == [egress("udp", 0, 0)]


def test_icmp_is_a_flow_per_peer(probes: Probes) -> None:
    probes.send(Ether() / IP(src=CONTAINER, dst=PEER) / ICMP(), times=2)
    [(key, stats)] = probes.flows().items()
    assert key == egress("icmp", 0, 0) and stats.packets == 2


def test_link_housekeeping_is_not_counted(probes: Probes) -> None:
    probes.send(Ether() / ARP(psrc=CONTAINER, pdst=PEER))
    probes.send(Ether() / IPv6(src=CONTAINER6, dst=PEER6) / ICMPv6ND_NS(tgt=PEER6))
    assert probes.flows() == {}


def test_a_served_connection_is_counted_in_its_clients_aggregate(probes: Probes) -> None:
    """The container answers once on 8080 (the kernel learns it serves the port); a client's
    next connection is counted per client address, both ways."""
    client = "10.0.0.9"
    probes.send(Ether() / IP(src=CONTAINER, dst=client) / TCP(sport=8080, dport=50000,
                                                              flags="SA"))
    for flags in ("S", "A"):
        probes.send(Ether() / IP(src=client, dst=CONTAINER) / TCP(sport=50001, dport=8080,
                                                                  flags=flags),
                    direction="ingress")
    probes.send(Ether() / IP(src=CONTAINER, dst=client) / TCP(sport=8080, dport=50001,
                                                              flags="A"))
    flows = probes.flows()
    inbound = FlowKey(LOOPBACK, "ingress", "tcp", client, 0, CONTAINER, 8080, served=True)
    answers = FlowKey(LOOPBACK, "egress", "tcp", CONTAINER, 8080, client, 0, served=True)
    assert flows[inbound].packets == 2 and flows[inbound].connections == 1
    assert flows[answers].packets == 1
    assert not [k for k in flows if 50001 in (k.sport, k.dport)]
