"""End to end with two real containers on a test bridge of our own (only their addresses):
a TCP transfer as one flow, DNS parsed and attributed, a 200-port scan, benign HTTP, and
no tc filter of ours left after stop."""

from __future__ import annotations

import ipaddress
import random
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cauditd.config import NetworkConfig, ProbesConfig
from cauditd.events import DnsEvent, Event, FlowEvent
from cauditd.findings import Priority
from cauditd.network import tc
from cauditd.network.probes import ServedMode
from tests.conftest import REPO, TEST_IMAGE, docker_problem, ebpf_problem, unavailable
from tests.network.conftest import MonitorThread

TRANSFER_BYTES = 1_000_000
HEADERS_PER_PACKET = 14 + 20 + 32  # Ethernet, IPv4, TCP with timestamps
SYN_EXTRA_OPTIONS = 8  # the SYN's options (MSS, SACK-permitted, window scale) beyond timestamps
MAX_FRAME = 14 + 1500  # a retransmitted segment fills at most the bridge's MTU
DNS_NAME = "web.cauditd.test"
LEARNING_S = 2  # B's baseline: the ports it listens on in its first 2 s (httpd's 8080)


@dataclass
class Pair:
    """Client A and server B on our bridge, and the monitor watching both."""

    runner: MonitorThread
    subnet: str
    a_ip: str
    b_ip: str
    a_id: str
    b_id: str
    a_pid: int
    b_pid: int

    def exec(self, who: str, script: str, *, detach: bool = False, timeout: float = 60) -> str:
        name = self.a_name if who == "a" else self.b_name
        cmd = ["docker", "exec", *(["-d"] if detach else []), name, "sh", "-c", script]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        assert out.returncode == 0, out.stderr
        return out.stdout

    @property
    def a_name(self) -> str:
        return f"cauditd-t-a-{self.subnet.split('.')[2]}"

    @property
    def b_name(self) -> str:
        return f"cauditd-t-b-{self.subnet.split('.')[2]}"

    def events(self, start: int = 0) -> list[Event]:
        """Events of A and B since `start` (the monitor watches every container on the host,
        other tests' too)."""
        ours = (self.a_id, self.b_id)
        return [e for e in self.runner.events[start:] if e.container.id in ours]

    def wait_listen(self, port: int) -> None:
        for _ in range(50):
            if f":{port} " in self.exec("b", "netstat -ltnu"):
                return
            time.sleep(0.1)
        raise AssertionError(f"B never listened on {port}")

    def scrape(self) -> None:
        self.runner.run(self.runner.monitor.scrape_now())


def _docker(*args: str) -> str:
    out = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    for problem in (ebpf_problem(), docker_problem()):
        if problem:
            unavailable(problem)
    forward = Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()
    assert forward == "0", "net.ipv4.ip_forward must be 0 (ENVIRONMENT.md network safety)"
    third = random.randint(1, 250)
    subnet = f"10.213.{third}.0/24"
    net = f"cauditd-t-net-{uuid.uuid4().hex[:8]}"
    a_ip, b_ip = f"10.213.{third}.2", f"10.213.{third}.3"
    names = [f"cauditd-t-a-{third}", f"cauditd-t-b-{third}"]
    _docker("network", "create", "--subnet", subnet, net)
    from cauditd.containers.registry import ContainerRegistry

    runner = MonitorThread(NetworkConfig(flow_scrape_interval_s=0.5, flow_idle_timeout_s=600,
                                         inbound_learning_s=LEARNING_S),
                           ContainerRegistry(ProbesConfig(), []))
    try:
        runner.start()
        a_id = _docker("run", "-d", "--name", names[0], "--network", net, "--ip", a_ip,
                       TEST_IMAGE, "sleep", "600")
        b_id = _docker("run", "-d", "--name", names[1], "--network", net, "--ip", b_ip,
                       TEST_IMAGE, "sh", "-c", "mkdir -p /tmp/www && echo hello > "
                       f"/tmp/www/index.html && httpd -p 8080 -h /tmp/www && "
                       f"dnsd {DNS_NAME}={b_ip} & exec sleep 600")
        a_pid, b_pid = (int(_docker("inspect", "-f", "{{.State.Pid}}", i)) for i in (a_id, b_id))
        runner.wait_until(lambda: {a_id, b_id} <= set(runner.monitor.attached()), "attach")
        yield Pair(runner, subnet, a_ip, b_ip, a_id, b_id, a_pid, b_pid)
    finally:
        runner.stop()
        subprocess.run(["docker", "rm", "-f", *names], capture_output=True, timeout=120)
        subprocess.run(["docker", "network", "rm", net], capture_output=True, timeout=60)


def _flow_news(events: list[Event], container_id: str) -> list[FlowEvent]:
    return [e for e in events if isinstance(e, FlowEvent) and e.type == "flow_new"
            and e.container.id == container_id]


def _link_control(event: FlowEvent) -> bool:
    """IPv6 link upkeep the kernel sends on its own schedule (MLD reports, neighbour
    discovery from link-local addresses): real traffic, but no test's doing. Any protocol:
    an MLD report rides behind a hop-by-hop header, which the probe does not walk, so its
    flow's l4proto is "0", not "icmpv6"."""
    sip, dip = ipaddress.ip_address(event.sip), ipaddress.ip_address(event.dip)
    return sip.version == 6 and (dip.is_multicast or sip.is_link_local)


def _rule_engine() -> Any:
    from cauditd.rules.engine import RuleEngine
    from cauditd.rules.loader import load_ruleset

    files = sorted((REPO / "rules").glob("*.toml"))
    return RuleEngine(load_ruleset(files), suppress_window_s=60)


def retransmitted(pair: Pair, who: str) -> int:
    """TCP segments the container's network namespace retransmitted so far (/proc/net/snmp)."""
    header, values = (line.split() for line in
                      pair.exec(who, "grep '^Tcp:' /proc/net/snmp").splitlines()[:2])
    return int(values[header.index("RetransSegs")])


def test_tcp_transfer_is_one_flow_with_matching_bytes(pair: Pair) -> None:
    pair.exec("b", "sleep 20 | nc -l -p 5001 > /tmp/got", detach=True)
    pair.wait_listen(5001)
    mark = len(pair.runner.events)
    resent_before = retransmitted(pair, "a")
    pair.exec("a", f"dd if=/dev/zero of=/tmp/f bs=1000 count=1000 2>/dev/null; "
                   f"nc {pair.b_ip} 5001 < /tmp/f")
    for _ in range(50):
        if pair.exec("b", "wc -c < /tmp/got").strip() == str(TRANSFER_BYTES):
            break
        time.sleep(0.1)
    pair.scrape()
    # Retransmitted segments are on the wire twice (a loaded machine makes a few): the flow
    # counts them, so the bound allows for them, and for nothing else.
    resent = retransmitted(pair, "a") - resent_before
    opened = [e for e in _flow_news(pair.events(mark), pair.a_id) if e.dport == 5001]
    assert [(e.direction, e.l4proto, e.dip) for e in opened] == [("egress", "tcp", pair.b_ip)]
    for container, direction in ((pair.a_id, "egress"), (pair.b_id, "ingress")):
        flows = [f for f in pair.runner.call(lambda c=container: pair.runner.monitor.flows(
            {"container": c, "port": 5001})) if not f["reply"]]
        assert len(flows) == 1, flows
        flow = flows[0]
        assert (flow["direction"], flow["sip"], flow["dip"]) == (direction, pair.a_ip, pair.b_ip)
        assert TRANSFER_BYTES <= flow["bytes"] <= TRANSFER_BYTES + flow["packets"] * \
            HEADERS_PER_PACKET + SYN_EXTRA_OPTIONS + resent * MAX_FRAME, (flow, resent)
        assert "SYN" in flow["tcp_flags"] and "FIN" in flow["tcp_flags"]


def test_dns_query_parsed_and_attributed(pair: Pair) -> None:
    mark = len(pair.runner.events)
    out = pair.exec("a", f"nslookup {DNS_NAME} {pair.b_ip}")
    assert pair.b_ip in out

    def answered() -> list[DnsEvent]:
        return [e for e in pair.runner.events[mark:] if isinstance(e, DnsEvent)
                and e.type == "dns_response" and pair.b_ip in e.answers]

    response = pair.runner.wait_until(answered, "the DNS response")[0]
    assert response.container.id == pair.a_id
    assert (response.qname, response.qtype, response.rcode) == (DNS_NAME, "A", "NOERROR")
    assert response.ttls == (60,) and (response.sip, response.sport) == (pair.b_ip, 53)
    dns_events = [e for e in pair.events(mark) if isinstance(e, DnsEvent)]
    queries = [e for e in dns_events if e.type == "dns_query" and e.qname == DNS_NAME]
    assert queries and all(q.container.id == pair.a_id and q.direction == "egress"
                           for q in queries)
    assert all(e.container.id == pair.a_id for e in dns_events)  # the server's side is not copied
    logged = pair.runner.call(lambda: pair.runner.monitor.dns(
        {"container": pair.a_id[:12], "name": "cauditd.test"}))
    assert any(d["type"] == "dns_response" and d["answers"] == [pair.b_ip] for d in logged)
    # a flow to the answered address now carries the name
    pair.exec("a", f"nc -w 1 {pair.b_ip} 5999 < /dev/null || true")
    named = pair.runner.wait_until(lambda: [
        e for e in _flow_news(pair.runner.events[mark:], pair.a_id) if e.dport == 5999],
        "the flow to 5999")
    assert DNS_NAME in named[0].peer_names


SEND_DNS = """
import socket, sys
from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import UDP
name, answer, dst, sport, dport = sys.argv[1], sys.argv[2], sys.argv[3], *map(int, sys.argv[4:6])
msg = bytes(DNS(id=4242, qr=1, qd=DNSQR(qname=name),
                an=DNSRR(rrname=name, type="A", rdata=answer, ttl=600)))
if sport == 0:  # an ordinary UDP socket (an ephemeral source port)
    socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(msg, (dst, dport))
else:  # a raw socket: any source port, no bind (the netns may serve that port already)
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
    raw.sendto(bytes(UDP(sport=sport, dport=dport, chksum=0) / msg), (dst, 0))
"""


def _send_dns_response(pid: int, name: str, answer: str, dst: str, sport: int,
                       dport: int) -> None:
    """A DNS *response* (QR=1, one A answer) sent from the netns of `pid` to dst:dport."""
    import sys

    done = subprocess.run(["nsenter", "-t", str(pid), "-n", sys.executable, "-c", SEND_DNS,
                           name, answer, dst, str(sport), str(dport)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def _flow_to(pair: Pair, port: int, mark: int) -> FlowEvent:
    pair.exec("a", f"nc -w 1 {pair.b_ip} {port} < /dev/null || true")
    return pair.runner.wait_until(lambda: [
        e for e in _flow_news(pair.runner.events[mark:], pair.a_id) if e.dport == port],
        f"the flow to {port}")[0]


def test_response_the_container_sends_is_a_query_and_teaches_no_name(pair: Pair) -> None:
    """A container that sends a DNS message with QR=1 (a "response") to a server must not
    name its peers with it, nor slip a tunnel past the query rules."""
    mark = len(pair.runner.events)
    tunnel = "x" * 60 + ".forged.cauditd.test"
    for name in ("forged.cauditd.test", tunnel):
        _send_dns_response(pair.a_pid, name, pair.b_ip, pair.b_ip, 0, 53)
    sent = pair.runner.wait_until(lambda: [
        e for e in pair.events(mark) if isinstance(e, DnsEvent) and e.qname == tunnel
        and e.direction == "egress"], "the forged message")
    assert "forged.cauditd.test" not in _flow_to(pair, 5998, mark).peer_names
    assert [(e.type, e.container.id) for e in sent] == [("dns_query", pair.a_id)]
    engine = _rule_engine()
    fired = {f.rule for e in pair.events(mark) for f in engine.match(e)}
    assert "DNS tunnelling traits" in fired


def test_unsolicited_response_teaches_no_name(pair: Pair) -> None:
    """A response nobody asked for (a neighbour spoofing port 53) names nothing and fires no
    rule: the container's NXDOMAIN and name rules are about its own lookups."""
    mark = len(pair.runner.events)
    _send_dns_response(pair.b_pid, "spoofed.cauditd.test", pair.b_ip, pair.a_ip, 53, 33333)

    def spoofed() -> list[DnsEvent]:
        return [e for e in pair.events(mark) if isinstance(e, DnsEvent)
                and e.qname == "spoofed.cauditd.test"]

    pair.runner.wait_until(lambda: spoofed() or pair.runner.monitor.stats().get("dns_unmatched"),
                           "the unsolicited response")
    assert spoofed() == []
    assert "spoofed.cauditd.test" not in _flow_to(pair, 5997, mark).peer_names


def _syn_scan(pair: Pair, ports: str, retries: int) -> None:
    """An nmap SYN scan from A of B's `ports` (only B, on the test's own bridge)."""
    scan = subprocess.run(
        ["nsenter", "-t", str(pair.a_pid), "-n", "nmap", "-n", "-Pn", "-sS", "-p", ports,
         "--max-retries", str(retries), pair.b_ip], capture_output=True, text=True, timeout=120)
    assert scan.returncode == 0, scan.stderr


def test_port_scan_gives_200_destination_ports(pair: Pair) -> None:
    mark = len(pair.runner.events)
    _syn_scan(pair, "1-200", retries=1)

    def ports() -> set[int]:
        return {e.dport for e in _flow_news(pair.runner.events[mark:], pair.a_id)
                if e.dip == pair.b_ip and e.l4proto == "tcp" and e.direction == "egress"}

    pair.runner.wait_until(lambda: len(ports()) >= 200, "200 scanned ports")
    assert ports() == set(range(1, 201))
    engine = _rule_engine()
    findings = [f for e in pair.events(mark) for f in engine.match(e)]
    scans = [f for f in findings if f.rule == "Port scan from container"]
    assert len(scans) == 1 and scans[0].container.full_id == pair.a_id


def test_syn_flood_at_closed_ports_reads_sockets_off_the_loop(
        pair: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    """A neighbour's SYN flood at 1,000 closed ports of B (past its learning period): every
    flow reaches the rules, and B's sockets are read in a worker thread about once a second,
    never on the event loop (each read walks the kernel's socket hash for milliseconds)."""
    from cauditd.network import inbound, listen

    reads: list[str] = []
    real_read = listen.read_ports

    def read(pid: int) -> listen.SocketPorts:
        reads.append(threading.current_thread().name)
        return real_read(pid)

    time.sleep(LEARNING_S + 0.5)  # B's learning period is over (when this test runs first)
    monkeypatch.setattr(listen, "read_ports", read)
    mark, began = len(pair.runner.events), time.monotonic()
    _syn_scan(pair, "1000-1999", retries=0)

    def flooded() -> set[int]:
        return {e.dport for e in _flow_news(pair.runner.events[mark:], pair.b_id)
                if e.direction == "ingress" and e.sip == pair.a_ip}

    pair.runner.wait_until(lambda: len(flooded()) >= 1000, "B's 1,000 inbound flows")
    assert flooded() == set(range(1000, 2000))
    elapsed = time.monotonic() - began
    assert reads and pair.runner.thread_name not in reads
    assert len(reads) <= elapsed / inbound.READ_INTERVAL_S + 3, (len(reads), elapsed)


def test_benign_http_fetch_gives_only_its_flows(pair: Pair) -> None:
    pair.wait_listen(8080)  # since B started: a port of its baseline (LEARNING_S)
    time.sleep(1)  # settle: earlier tests' stragglers (late FIN/ACKs) land before the mark
    mark = len(pair.runner.events)
    assert pair.exec("a", f"wget -q -O - http://{pair.b_ip}:8080/index.html").strip() == "hello"
    pair.runner.wait_until(lambda: _flow_news(pair.runner.events[mark:], pair.b_id),
                           "B's side of the fetch")
    pair.scrape()
    events = pair.events(mark)
    opened = {(e.container.id, e.direction, e.sip, e.dip, e.dport)
              for e in events if isinstance(e, FlowEvent) and e.type == "flow_new"
              and not _link_control(e)}
    assert opened == {(pair.a_id, "egress", pair.a_ip, pair.b_ip, 8080),
                      (pair.b_id, "ingress", pair.a_ip, pair.b_ip, 8080)}
    assert not [e for e in events if isinstance(e, DnsEvent)]
    engine = _rule_engine()
    findings = [f for e in events for f in engine.match(e)]
    assert [f.rule for f in findings if f.priority <= Priority.WARNING] == []  # lower: severer
    assert engine.ruleset.candidates(next(e for e in events if e.type == "flow_new"))


def test_new_inbound_flows_to_a_served_port_send_no_record_when_quiet(pair: Pair) -> None:
    """Quiet (what the daemon sets when no rule needs them, as with the default rules): once B
    answered on 8080, B's side of a new fetch sends no flow_new and is read from the kernel's
    flow table instead; A's side (egress) and a flow to a port B never answered on still do."""
    monitor = pair.runner.monitor
    pair.wait_listen(8080)
    pair.runner.call(lambda: monitor.probes.set_served(ServedMode.QUIET))
    try:
        fetch = f"wget -q -O - http://{pair.b_ip}:8080/index.html"
        assert pair.exec("a", fetch).strip() == "hello"  # B answers: 8080 is served
        time.sleep(0.5)
        unsent = pair.runner.call(lambda: monitor.probes.quiet_served)
        mark = len(pair.runner.events)
        assert pair.exec("a", fetch).strip() == "hello"
        pair.exec("a", f"nc -w 1 {pair.b_ip} 9 </dev/null || true")  # closed: B sends RST

        def egress() -> list[FlowEvent]:
            return [e for e in _flow_news(pair.runner.events[mark:], pair.a_id)
                    if e.dip == pair.b_ip and e.dport in (8080, 9)]

        pair.runner.wait_until(lambda: {e.dport for e in egress()} == {8080, 9}, "A's flows")
        fetched = next(e for e in egress() if e.dport == 8080)
        pair.runner.wait_until(lambda: [e for e in _flow_news(pair.runner.events[mark:], pair.b_id)
                                        if e.dport == 9], "B's side of the closed port")
        time.sleep(0.5)
        inbound = [e for e in _flow_news(pair.runner.events[mark:], pair.b_id) if e.dport == 8080]
        assert inbound == []
        assert pair.runner.call(lambda: monitor.probes.quiet_served) > unsent
        pair.scrape()
        flows = pair.runner.call(lambda: monitor.flows({"container": pair.b_id, "limit": 10000}))
        read = [f for f in flows if f["direction"] == "ingress" and f["dport"] == 8080
                and f["sport"] == fetched.sport]
        assert len(read) == 1 and read[0]["packets"] > 0 and not read[0]["reply"]
    finally:
        pair.runner.call(lambda: monitor.probes.set_served(ServedMode.RECORDS))


def test_connections_to_a_served_port_are_counted_per_client(pair: Pair) -> None:
    """Aggregated (the daemon's default under the default rules): once B answered on 8080, A's
    fetches from it are counted at B in one flow per direction (A's address and B's port, A's
    ports 0) with their connection count, and have no flow of their own there; A's side of
    each (A is the client) is still a flow and a flow_new of its own, and a port B never
    answered on still sends B's flow_new."""
    monitor = pair.runner.monitor
    pair.wait_listen(8080)
    fetch = f"wget -q -O - http://{pair.b_ip}:8080/index.html"
    assert pair.exec("a", fetch).strip() == "hello"  # B answers: 8080 is served
    time.sleep(0.5)
    pair.runner.call(lambda: monitor.probes.set_served(ServedMode.AGGREGATE))
    try:
        unsent = pair.runner.call(lambda: monitor.probes.quiet_served)
        mark, since_ns = len(pair.runner.events), time.time_ns()
        fetches = 20
        out = pair.exec("a", f"for i in $(seq {fetches}); do {fetch}; done")
        assert out.split() == ["hello"] * fetches
        pair.exec("a", f"nc -w 1 {pair.b_ip} 9 </dev/null || true")  # closed: B sends RST

        def fetched() -> list[FlowEvent]:
            return [e for e in _flow_news(pair.runner.events[mark:], pair.a_id)
                    if e.dip == pair.b_ip and e.dport == 8080]

        pair.runner.wait_until(lambda: len(fetched()) == fetches, "A's flows, one per fetch")
        pair.runner.wait_until(lambda: [e for e in _flow_news(pair.runner.events[mark:], pair.b_id)
                                        if e.dport == 9], "B's side of the closed port")
        assert [e for e in _flow_news(pair.runner.events[mark:], pair.b_id)
                if e.dport == 8080] == []
        assert pair.runner.call(lambda: monitor.probes.quiet_served) >= unsent + fetches
        pair.scrape()
        flows = pair.runner.call(lambda: monitor.flows({"container": pair.b_id, "limit": 10000}))
        to_8080 = [f for f in flows
                   if f["last_ns"] >= since_ns and 8080 in (f["sport"], f["dport"])]
        assert [f for f in to_8080 if not f["served"]] == []  # no flow per connection at B
        inbound = [f for f in to_8080 if f["direction"] == "ingress"]
        answers = [f for f in to_8080 if f["direction"] == "egress"]
        assert [(f["sip"], f["sport"], f["dip"], f["dport"], f["reply"]) for f in inbound] == \
            [(pair.a_ip, 0, pair.b_ip, 8080, False)]
        assert [(f["sip"], f["sport"], f["dip"], f["dport"], f["reply"]) for f in answers] == \
            [(pair.b_ip, 8080, pair.a_ip, 0, True)]
        assert inbound[0]["connections"] == answers[0]["connections"] == fetches
        assert inbound[0]["packets"] >= 4 * fetches  # SYN, ACK, request, FIN at least
        assert answers[0]["bytes"] >= fetches * (HEADERS_PER_PACKET + len("hello\n"))
        clients = pair.runner.call(lambda: monitor.flows({"container": pair.a_id,
                                                          "limit": 10000}))
        assert len({f["sport"] for f in clients if f["direction"] == "egress"
                    and f["dport"] == 8080 and f["first_ns"] >= since_ns}) == fetches
    finally:
        pair.runner.call(lambda: monitor.probes.set_served(ServedMode.RECORDS))


def test_stop_ends_flows_and_leaves_no_filters(pair: Pair) -> None:
    ours = (pair.a_id, pair.b_id)  # other tests' containers' flows may end on their own
    ifindexes = [i for ifs in pair.runner.monitor.attached().values() for i in ifs]
    assert ifindexes
    active = pair.runner.call(lambda: [f for f in pair.runner.monitor.flows({"limit": 10000})
                                       if f["active"] and f["container_id"] in ours])
    assert active
    mark = len(pair.runner.events)
    pair.runner.stop()
    assert all(tc.ours(i) == [] for i in ifindexes)
    ended = [e for e in pair.events(mark) if isinstance(e, FlowEvent) and e.type == "flow_end"]
    assert {(f["container_id"], f["sip"], f["sport"], f["dip"], f["dport"]) for f in active} <= \
        {(e.container.id, e.sip, e.sport, e.dip, e.dport) for e in ended}
    transfer = [e for e in pair.events(0) if isinstance(e, FlowEvent) and e.type == "flow_end"
                and e.container.id == pair.a_id and e.dport == 5001 and e.direction == "egress"]
    assert len(transfer) == 1 and transfer[0].bytes >= TRANSFER_BYTES  # ended once, in full

