"""Every default network rule through the real daemon (`cauditd run`), positive and negative,
with three containers on a test bridge of our own: B serves (DNS, HTTP) and holds every address
the others talk to, A misbehaves, C does the look-alikes. Findings are read from the API.

Network safety (/work/shared/ENVIRONMENT.md): every packet goes to B. The addresses a rule
needs (a "disallowed" CIDR, ICMP sweep targets, 169.254.169.254) are added to B's eth0 from
the host with nsenter, and A/C reach 169.254.169.0/24 by an on-link route on their eth0 (ARP on
the bridge: only B answers, nothing is routed; net.ipv4.ip_forward is checked to be 0).
The disallowed CIDR is appended to `egress_disallowed_cidrs` in a user rule file, and the
large-volume macro is lowered to 5 MB there, so no real address or gigabyte is involved.
"""

from __future__ import annotations

import json
import random
import subprocess
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, TEST_IMAGE, docker_problem, ebpf_problem, unavailable
from tests.harness import DaemonProcess, write_config

LEARNING_S = 3
LARGE_BYTES = 5_000_000
CONTAINER_BYTES = 12_000_000  # two of test_large_egress_volume's 8 MB flows, not one
SWEEP_HOSTS = 12
SWEEP_FIRST = 120  # sweep targets .120-.131: outside the disallowed CIDR (.96/28: .96-.111)
DNS_NAME = "web.cauditd.test"
WITNESS_DGA = "q8zk3v7mx2p9wj4tbn.com"  # a notice for C: proves C's earlier events were matched


@dataclass
class Bridge:
    daemon: DaemonProcess
    prefix: str  # "10.213.N."
    names: dict[str, str]  # role -> container name
    pids: dict[str, int]

    @property
    def b_ip(self) -> str:
        return self.prefix + "3"

    @property
    def banned_ip(self) -> str:
        return self.prefix + "100"  # on B, in the CIDR appended to the disallowed list

    def sink_on_b(self, port: int) -> None:
        """B accepts one TCP connection on `port` and discards what it receives."""
        self.exec("b", f"sleep 30 | nc -l -p {port} >/dev/null", detach=True)
        deadline = time.monotonic() + 10
        while f":{port} " not in self.exec("b", "netstat -ltn"):
            assert time.monotonic() < deadline, f"B never listened on {port}"
            time.sleep(0.1)

    def exec(self, who: str, script: str, *, detach: bool = False) -> str:
        cmd = ["docker", "exec", *(["-d"] if detach else []), self.names[who], "sh", "-c", script]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        return out.stdout

    def findings(self, rule: str, who: str) -> list[dict[str, Any]]:
        query = urllib.parse.urlencode({"rule": rule, "container": self.names[who],
                                        "limit": "1000"})
        return list(self.daemon.get("/v1/findings?" + query)["findings"])

    def wait_findings(self, rule: str, who: str, timeout: float = 30,
                      qname: str | None = None) -> list[dict[str, Any]]:
        """`rule`'s findings for `who` once there is one (with `qname`, one about it)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.findings(rule, who)
            if found and (qname is None or qname in _qnames(found)):
                return found
            time.sleep(0.2)
        stats = {"flows": self.network("/v1/flows", container=self.names[who]),
                 "findings": self.daemon.get("/v1/findings?source=network")["findings"],
                 "stats": self.daemon.get("/v1/stats")["network"]}
        raise AssertionError(f"no {rule!r} finding for {who}; stats {stats}; log:\n" + "\n".join(
            line for line in self.daemon.lines if "aiohttp.access" not in line
            and ("network" in line or "WARN" in line or "ERROR" in line))[-6000:])

    def network(self, path: str, **filters: str) -> list[dict[str, Any]]:
        kind = path.rsplit("/", 1)[1]
        return list(self.daemon.get(f"{path}?{urllib.parse.urlencode(filters)}")[kind])


def _sh(*args: str) -> str:
    out = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"{args}: {out.stderr}"
    return out.stdout.strip()


def _in_netns(pid: int, *args: str) -> None:
    _sh("nsenter", "-t", str(pid), "-n", *args)


def _user_rules(path: Path, prefix: str) -> Path:
    path.mkdir()
    (path / "network-test.toml").write_text(
        "[lists]\n"
        f'egress_disallowed_cidrs = {{ items = ["{prefix}96/28"], override = "append" }}\n'
        "[macros]\n"
        f'large_egress_volume = {{ condition = "net.bytes > {LARGE_BYTES}", '
        'override = "replace" }\n'
        "[[rules]]\n"
        'name = "Large egress volume from container"\n'
        f'threshold = {{ count = {CONTAINER_BYTES}, within = "10m", by = ["container.id"], '
        'sum = "net.bytes" }\n'
        'override = { threshold = "replace" }\n'
    )
    return path


@pytest.fixture(scope="module")
def bridge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bridge]:
    for problem in (ebpf_problem(), docker_problem()):
        if problem:
            unavailable(problem)
    forward = Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()
    assert forward == "0", "net.ipv4.ip_forward must be 0 (ENVIRONMENT.md network safety)"
    third = random.randint(1, 250)
    prefix = f"10.213.{third}."
    net = f"cauditd-t-net-{uuid.uuid4().hex[:8]}"
    names = {r: f"cauditd-t-{r}{third}-{uuid.uuid4().hex[:4]}" for r in ("a", "b", "c")}
    tmp = tmp_path_factory.mktemp("net-rules")
    rules = _user_rules(tmp / "rules.d", prefix)
    config = write_config(tmp / "cauditd.toml", tmp / "state", (
        f'[rules]\npaths = ["{rules}"]\n[network]\nflow_scrape_interval_s = 0.5\n'
        f"flow_idle_timeout_s = 600\ninbound_learning_s = {LEARNING_S}\n"))
    _sh("docker", "network", "create", "--subnet", f"{prefix}0/24", net)
    daemon = DaemonProcess(config)
    try:
        daemon.wait_ready()
        server = (f"dnsd {DNS_NAME}={prefix}3 & mkdir -p /tmp/www && echo hello > "
                  "/tmp/www/index.html && httpd -p 8080 -h /tmp/www; exec sleep 900")
        for role, ip, cmd in (("b", "3", ["sh", "-c", server]), ("a", "2", ["sleep", "900"]),
                              ("c", "4", ["sleep", "900"])):
            _sh("docker", "run", "-d", "--name", names[role], "--network", net, "--ip",
                prefix + ip, TEST_IMAGE, *cmd)
        pids = {r: int(_sh("docker", "inspect", "-f", "{{.State.Pid}}", n))
                for r, n in names.items()}
        for extra in ["100", *(str(SWEEP_FIRST + i) for i in range(SWEEP_HOSTS))]:
            _in_netns(pids["b"], "ip", "addr", "add", f"{prefix}{extra}/32", "dev", "eth0")
        for meta in ("169.254.169.254", "169.254.169.253"):
            _in_netns(pids["b"], "ip", "addr", "add", f"{meta}/32", "dev", "eth0")
        for role in ("a", "c"):
            _in_netns(pids[role], "ip", "route", "add", "169.254.169.0/24", "dev", "eth0")
        deadline = time.monotonic() + 30
        while daemon.get("/v1/stats")["network"]["containers_attached"] < 3:
            assert time.monotonic() < deadline, "the daemon never attached to the containers"
            time.sleep(0.2)
        time.sleep(LEARNING_S + 1)  # B's baseline (dnsd 53/udp, httpd 8080) is learnt
        yield Bridge(daemon, prefix, names, pids)
    finally:
        daemon.kill()
        subprocess.run(["docker", "rm", "-f", *names.values()], capture_output=True, timeout=120)
        subprocess.run(["docker", "network", "rm", net], capture_output=True, timeout=60)


def _dport_of(finding: dict[str, Any]) -> int:
    return int(finding["output_fields"]["fd.dport"])


def _qnames(findings: list[dict[str, Any]]) -> set[str]:
    return {f["output_fields"]["dns.qname"] for f in findings}


# --- positives: A misbehaves ----------------------------------------------------------------

def test_egress_to_disallowed_cidr_and_port(bridge: Bridge) -> None:
    bridge.exec("a", f"nc -w 1 {bridge.banned_ip} 80 </dev/null; "
                     f"nc -w 1 {bridge.b_ip} 2323 </dev/null; true")
    found = bridge.wait_findings("Egress to disallowed destination", "a")
    deadline = time.monotonic() + 20
    while {f["output_fields"]["fd.dip"] for f in found} != {bridge.banned_ip, bridge.b_ip}:
        assert time.monotonic() < deadline, found
        time.sleep(0.2)
        found = bridge.findings("Egress to disallowed destination", "a")
    ports = {(f["output_fields"]["fd.dip"], _dport_of(f)) for f in found}
    assert ports == {(bridge.banned_ip, 80), (bridge.b_ip, 2323)}
    assert all(f["source"] == "network" and f["priority"] == "Warning" for f in found)


def test_egress_to_mining_pool_port(bridge: Bridge) -> None:
    bridge.exec("a", f"nc -w 1 {bridge.b_ip} 3333 </dev/null; true")
    found = bridge.wait_findings("Egress to mining pool port", "a")
    assert [(f["output_fields"]["fd.dip"], _dport_of(f)) for f in found] == [(bridge.b_ip, 3333)]
    # the connect() is seen by the syscall probes too
    assert bridge.wait_findings("Connection to mining pool port", "a")


def test_egress_to_cloud_metadata_address(bridge: Bridge) -> None:
    """169.254.169.254 is B's (added from the host): the packets prove the network-side rule
    without any packet leaving the test bridge."""
    bridge.exec("a", "nc -w 1 169.254.169.254 80 </dev/null; true")
    found = bridge.wait_findings("Egress to cloud metadata service", "a")
    assert {f["output_fields"]["fd.dip"] for f in found} == {"169.254.169.254"}
    flows = bridge.network("/v1/flows", container=bridge.names["b"], peer="10.213.0.0/16",
                           port="80")
    assert any(f["dip"] == "169.254.169.254" and f["direction"] == "ingress" for f in flows)


def test_dns_blocklist_tunnel_and_dga(bridge: Bridge) -> None:
    tunnel = "a" * 10 + "b3x9kq7mz2vw8p4tn6rj5yh1cd0fgsl" + "e" * 14 + ".t.cauditd.test"
    for name in ("pool.minexmr.com", tunnel, WITNESS_DGA):
        bridge.exec("a", f"nslookup {name} {bridge.b_ip} >/dev/null 2>&1; true")
    assert _qnames(bridge.wait_findings("DNS query for blocklisted domain", "a")) == \
        {"pool.minexmr.com"}
    assert tunnel in _qnames(bridge.wait_findings("DNS tunnelling traits", "a"))
    dga = bridge.wait_findings("DGA-like DNS query", "a", qname=WITNESS_DGA)
    assert all(f["priority"] == "Notice" for f in dga)


def test_nxdomain_storm_fires_once(bridge: Bridge) -> None:
    names = " ".join(f"gone{i}.cauditd.test" for i in range(25))
    bridge.exec("a", f"for n in {names}; do nslookup $n {bridge.b_ip} >/dev/null 2>&1; done; "
                     "true")
    found = bridge.wait_findings("Many NXDOMAIN responses", "a")
    time.sleep(1)  # later responses of the same window must be merged, not new findings
    found = bridge.findings("Many NXDOMAIN responses", "a")
    assert len(found) == 1, found


def test_port_scan_fires_exactly_once(bridge: Bridge) -> None:
    scan = subprocess.run(
        ["nsenter", "-t", str(bridge.pids["a"]), "-n", "nmap", "-n", "-Pn", "-sS", "-p", "1-200",
         "--max-retries", "1", bridge.b_ip], capture_output=True, text=True, timeout=120)
    assert scan.returncode == 0, scan.stderr
    found = bridge.wait_findings("Port scan from container", "a")
    deadline = time.monotonic() + 20
    while len(bridge.network("/v1/flows", container=bridge.names["a"], peer=bridge.b_ip,
                             limit="1000")) < 200:
        assert time.monotonic() < deadline, "the scan's flows never reached the flow log"
        time.sleep(0.2)
    found = bridge.findings("Port scan from container", "a")
    assert len(found) == 1 and found[0]["count"] == 1, found
    assert found[0]["output_fields"]["fd.dip"] == bridge.b_ip


def test_icmp_sweep(bridge: Bridge) -> None:
    hosts = " ".join(f"{bridge.prefix}{SWEEP_FIRST + i}" for i in range(SWEEP_HOSTS))
    bridge.exec("a", f"for h in {hosts}; do ping -c 1 -W 1 $h >/dev/null; done; true")
    found = bridge.wait_findings("ICMP sweep from container", "a")
    assert len(found) == 1


def test_inbound_connection_to_new_port(bridge: Bridge) -> None:
    bridge.exec("b", "sleep 20 | nc -l -p 7000 >/dev/null", detach=True)
    deadline = time.monotonic() + 10
    while ":7000 " not in bridge.exec("b", "netstat -ltn"):
        assert time.monotonic() < deadline, "B never listened on 7000"
        time.sleep(0.1)
    bridge.exec("a", f"echo hi | nc -w 1 {bridge.b_ip} 7000; true")
    found = bridge.wait_findings("Inbound connection to new port", "b")
    assert [(_dport_of(f), f["output_fields"]["fd.cip"]) for f in found] == \
        [(7000, bridge.prefix + "2")]


def test_large_egress_volume(bridge: Bridge) -> None:
    bridge.sink_on_b(5001)
    bridge.exec("a", f"dd if=/dev/zero bs=1000 count=8000 2>/dev/null | "
                     f"nc -w 2 {bridge.b_ip} 5001; true")
    found = bridge.wait_findings("Large egress volume", "a")
    assert len(found) == 1 and int(found[0]["output_fields"]["net.bytes"]) > 8_000_000
    assert bridge.findings("Large egress volume from container", "a") == []  # 8 of 12 MB
    bridge.sink_on_b(5004)
    bridge.exec("a", f"dd if=/dev/zero bs=1000 count=8000 2>/dev/null | "
                     f"nc -w 2 {bridge.b_ip} 5004; true")
    total = bridge.wait_findings("Large egress volume from container", "a")
    assert len(total) == 1, "the second 8 MB flow brings A's sum over 12 MB: one finding"


# --- negatives: C does the look-alikes -------------------------------------------------------

LOOKALIKES = {
    "Egress to disallowed destination": "a flow to B's own address (outside the CIDR), port 2324",
    "Egress to mining pool port": "TCP to 3332",
    "Egress to cloud metadata service": "169.254.169.253",
    "DNS query for blocklisted domain": "minexmr.com.cauditd.test, notminexmr.com",
    "DNS tunnelling traits": "a 40-character label, type A",
    "DGA-like DNS query": "internationalization.com (the witness is C's only DGA finding)",
    "Many NXDOMAIN responses": "12 distinct NXDOMAIN names (threshold 20)",
    "Port scan from container": "10 ports of B (threshold 20)",
    "ICMP sweep from container": "3 hosts pinged (threshold 10)",
    "Inbound connection to new port": "C fetches B:8080, in B's baseline",
    "Large egress volume": "1 MB (macro lowered to 5 MB)",
    "Large egress volume from container": "1 MB in total (threshold lowered to 12 MB)",
}


def test_lookalikes_fire_nothing(bridge: Bridge) -> None:
    b = bridge.b_ip
    bridge.exec("c", f"nc -w 1 {b} 2324 </dev/null; nc -w 1 {b} 3332 </dev/null; "
                     "nc -w 1 169.254.169.253 80 </dev/null; true")
    names = ["minexmr.com.cauditd.test", "notminexmr.com", "k" * 40 + ".cauditd.test",
             "internationalization.com", *(f"miss{i}.cauditd.test" for i in range(8))]
    bridge.exec("c", "for n in " + " ".join(names) + f"; do nslookup $n {b} >/dev/null 2>&1;"
                     " done; true")
    bridge.exec("c", " ".join(f"nc -w 1 {b} {p} </dev/null;" for p in range(9000, 9010))
                + " true")
    hosts = " ".join(f"{bridge.prefix}{SWEEP_FIRST + i}" for i in range(3))
    bridge.exec("c", f"for h in {hosts}; do ping -c 2 -W 1 $h >/dev/null; done; true")
    assert bridge.exec("c", f"wget -q -O - http://{b}:8080/index.html").strip() == "hello"
    bridge.sink_on_b(5002)
    bridge.exec("c", f"dd if=/dev/zero bs=1000 count=1000 2>/dev/null | nc -w 2 {b} 5002; true")
    deadline = time.monotonic() + 30
    while not [f for f in bridge.network("/v1/flows", container=bridge.names["c"], port="5002")
               if f["direction"] == "egress" and not f["active"]]:
        assert time.monotonic() < deadline, "C's 1 MB flow never ended"
        time.sleep(0.2)
    # the witness: a notice for C after every look-alike above (same ordered event path)
    bridge.exec("c", f"nslookup {WITNESS_DGA} {b} >/dev/null 2>&1; true")
    dga = bridge.wait_findings("DGA-like DNS query", "c", qname=WITNESS_DGA)
    assert _qnames(dga) == {WITNESS_DGA}
    for rule in LOOKALIKES:
        if rule != "DGA-like DNS query":
            assert bridge.findings(rule, "c") == [], (rule, LOOKALIKES[rule])
    query = urllib.parse.urlencode({"container": bridge.names["c"], "source": "network",
                                    "min_priority": "warning"})
    assert bridge.daemon.get("/v1/findings?" + query)["findings"] == []
    assert bridge.findings("Inbound connection to new port", "b") == [] or all(
        _dport_of(f) != 8080 for f in bridge.findings("Inbound connection to new port", "b"))


# --- flows and DNS through the daemon's API and cauditctl -----------------------------------

def test_flows_and_dns_through_api_and_cauditctl(bridge: Bridge) -> None:
    bridge.sink_on_b(5003)
    bridge.exec("c", f"nslookup {DNS_NAME} {bridge.b_ip} >/dev/null; "
                     f"dd if=/dev/zero bs=1000 count=300 2>/dev/null | "
                     f"nc -w 2 {bridge.b_ip} 5003; true")
    c = bridge.names["c"]
    deadline = time.monotonic() + 30
    while True:
        flows = [f for f in bridge.network("/v1/flows", container=c, port="5003")
                 if f["direction"] == "egress" and not f["reply"]]
        if flows and not flows[0]["active"]:
            break
        assert time.monotonic() < deadline, flows
        time.sleep(0.2)
    assert len(flows) == 1 and flows[0]["bytes"] >= 300_000
    assert DNS_NAME in flows[0]["peer_names"]
    # nslookup asks A and AAAA at once; dnsd answers only the A (the AAAA response is empty)
    answers = [d for d in bridge.network("/v1/dns", container=c, name="cauditd.test")
               if d["type"] == "dns_response" and d["name"] == DNS_NAME and d["qtype"] == "A"]
    assert answers and answers[0]["answers"] == [bridge.b_ip]
    ctl = [str(REPO / ".venv/bin/cauditctl"), "--url", bridge.daemon.api_url, "--json"]
    shown = json.loads(_sh(*ctl, "flows", "--container", c, "--port", "5003"))
    assert [f["bytes"] for f in shown if f["direction"] == "egress" and not f["reply"]] == \
        [flows[0]["bytes"]]
    shown = json.loads(_sh(*ctl, "dns", "--container", c, "--name", DNS_NAME))
    assert any(d["answers"] == [bridge.b_ip] for d in shown)
    table = _sh(*ctl[:-1], "flows", "--container", c, "--port", "5003")
    assert bridge.b_ip in table
