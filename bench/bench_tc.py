"""The network probe's cost per packet in the kernel: probes/net.c's tc programs run on crafted
packets by BPF_PROG_TEST_RUN (the kernel runs a program N times on one packet and reports the
mean time per run), next to an empty SCHED_CLS program in the same rounds: no interface, no
traffic, no container, and none of bpf_stats' own clock reads or a loaded VM's cache misses,
so it ranks changes to net.c that a whole-server benchmark cannot tell apart from noise.

Packets (on the test-run device, loopback's ifindex):
- a packet of a flow the container opened (its entry exists: one lookup and the counters);
- a packet of a connection a client opened to a port the container serves, counted in the
  client's aggregate (three lookups: the connection's own flow, missing; its membership; the
  aggregate), inbound and the container's answer.

Run as root: .venv/bin/python bench/bench_tc.py [--quick]
"""

from __future__ import annotations

import socket
import struct
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "daemon"), str(REPO / "bench")]

from cauditd.network.probes import NetProbes, ServedMode  # noqa: E402
from cauditd.probes.bpf import prog_test_run  # noqa: E402
from common import Result, median  # noqa: E402

TITLE = "Network probe: kernel time per packet (BPF_PROG_TEST_RUN)"
TCP_SYN, TCP_ACK = 0x02, 0x10
EMPTY = "int empty(struct __sk_buff *skb) { return -1; }"  # TC_ACT_UNSPEC, as net.c returns


def tcp_packet(src: str, sport: int, dst: str, dport: int, flags: int) -> bytes:
    """An Ethernet frame with an IPv4 TCP segment and no payload."""
    eth = b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00"
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0, 64, socket.IPPROTO_TCP, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))
    tcp = struct.pack("!HHIIBBHHH", sport, dport, 1, 1, 5 << 4, flags, 65535, 0, 0)
    return eth + ip + tcp


def measure(rounds: int, repeat: int) -> dict[str, list[int]]:
    from bcc import BPF

    empty = BPF(text=EMPTY).load_func("empty", BPF.SCHED_CLS).fd
    probes = NetProbes(dns_capture=512, ringbuf_mmap=False)
    probes.load()
    probes.set_served(ServedMode.AGGREGATE)
    fds = {p.direction: p.fd for p in probes.programs}
    container, server, client = "10.0.0.2", "10.0.0.3", "10.0.0.9"
    # The container answers a SYN on 8080 once (the kernel learns that it serves the port),
    # then the first packet of each conversation makes its entries; the measured ones find them.
    prog_test_run(fds["egress"], tcp_packet(container, 8080, server, 50000, TCP_SYN | TCP_ACK), 1)
    prog_test_run(fds["egress"], tcp_packet(container, 40000, server, 443, TCP_SYN), 1)
    prog_test_run(fds["ingress"], tcp_packet(client, 40001, container, 8080, TCP_SYN), 1)
    cases = {
        "empty program (baseline)": (empty, tcp_packet(container, 40000, server, 443, TCP_ACK)),
        "a flow the container opened": (
            fds["egress"], tcp_packet(container, 40000, server, 443, TCP_ACK)),
        "aggregated connection, inbound": (
            fds["ingress"], tcp_packet(client, 40001, container, 8080, TCP_ACK)),
        "aggregated connection, the answer": (
            fds["egress"], tcp_packet(container, 8080, client, 40001, TCP_ACK)),
    }
    found: dict[str, list[int]] = {name: [] for name in cases}
    try:
        for _ in range(rounds):
            for name, (fd, packet) in cases.items():
                found[name].append(prog_test_run(fd, packet, repeat))
    finally:
        probes.close()
    return found


def run(quick: bool) -> list[Result]:
    rounds, repeat = (3, 200_000) if quick else (7, 1_000_000)
    found = measure(rounds, repeat)
    base = median(found["empty program (baseline)"])
    result = Result(title=TITLE, columns=["packet", "ns per packet (median)", "range",
                                          "above the empty program"])
    for name, runs in found.items():
        result.rows.append([name, f"{median(runs):.0f}", f"{min(runs)}-{max(runs)}",
                            f"{median(runs) - base:+.0f} ns"])
    result.notes.append(f"{rounds} rounds of {repeat} runs per packet, the cases interleaved; "
                        "one IPv4 TCP ACK each, after the conversation's first packet made its "
                        "entries.")
    result.data["tc"] = {name: median(runs) for name, runs in found.items()}
    return [result]


def main() -> None:
    for result in run("--quick" in sys.argv):
        print(result.markdown())


if __name__ == "__main__":
    main()
