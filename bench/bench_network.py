"""Network probe cost and capacity: iperf3 TCP throughput between two test containers with the
tc programs attached versus detached (alternating, in one run), and DNS queries per second
parsed without loss (the same name repeated, and a unique name per query, which defeats the
parse cache). Traffic stays on a test bridge of our own. Run as root:
    .venv/bin/python bench/bench_network.py [--quick]
or through `make bench` (bench/run.py calls `run(quick)`).
"""

from __future__ import annotations

import asyncio
import json
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "daemon"), str(REPO), str(REPO / "bench")]

from cauditd.config import NetworkConfig  # noqa: E402
from cauditd.events import ContainerInfo, DnsEvent, Event  # noqa: E402
from cauditd.network import netns  # noqa: E402
from cauditd.network.monitor import NetworkMonitor  # noqa: E402
from common import TEST_IMAGE, Result  # noqa: E402

IMAGE = TEST_IMAGE


class Registry:
    def __init__(self) -> None:
        self.items: list[ContainerInfo] = []

    def containers(self) -> list[ContainerInfo]:
        return list(self.items)


def docker(*args: str) -> str:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=True, timeout=120
    ).stdout.strip()


def iperf(client_pid: int, server_ip: str, seconds: int) -> float:
    out = subprocess.run(
        [
            "nsenter",
            "-t",
            str(client_pid),
            "-n",
            "iperf3",
            "-J",
            "-c",
            server_ip,
            "-t",
            str(seconds),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 30,
    ).stdout
    return float(json.loads(out)["end"]["sum_received"]["bits_per_second"])


def dns_blast(client_pid: int, server_ip: str, count: int, *, unique: bool = False
              ) -> tuple[int, float]:
    """Send `count` A queries from the client's netns, one in flight per 64; answers received.
    With `unique`, every query asks a different name (answered NXDOMAIN). The socket is made
    in the client's netns (network.netns)."""

    def run() -> tuple[int, float]:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            return blast(sock)

    def blast(sock: socket.socket) -> tuple[int, float]:
        sock.settimeout(1.0)
        start, got = time.monotonic(), 0
        for i in range(count):
            query = i.to_bytes(2, "big") + bytes.fromhex("01000001000000000000")
            label = f"n{i:07d}".encode() if unique else b"web"
            query += bytes([len(label)]) + label + b"\x07cauditd\x04test\x00\x00\x01\x00\x01"
            sock.sendto(query, (server_ip, 53))
            if i % 64 == 63 or i == count - 1:
                for _ in range(64 if i % 64 == 63 else count % 64):
                    try:
                        sock.recv(512)
                        got += 1
                    except TimeoutError:
                        break
        return got, time.monotonic() - start

    return netns.run_in(client_pid, run, timeout=count + 60.0)


def main(quick: bool) -> dict[str, object]:
    third = 200 + uuid.uuid4().int % 50
    net = f"cauditd-t-net-{uuid.uuid4().hex[:8]}"
    names = [f"cauditd-t-bench-a-{third}", f"cauditd-t-bench-b-{third}"]
    a_ip, b_ip = f"10.213.{third}.2", f"10.213.{third}.3"
    docker("network", "create", "--subnet", f"10.213.{third}.0/24", net)
    events: list[Event] = []
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    registry = Registry()
    monitor = NetworkMonitor(
        NetworkConfig(flow_scrape_interval_s=1),
        registry,  # type: ignore[arg-type]
        events.extend,
    )

    def on_loop(coro: object) -> object:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(120)  # type: ignore[arg-type]

    try:
        ids = [
            docker(
                "run",
                "-d",
                "--name",
                names[0],
                "--network",
                net,
                "--ip",
                a_ip,
                IMAGE,
                "sleep",
                "900",
            ),
            docker(
                "run",
                "-d",
                "--name",
                names[1],
                "--network",
                net,
                "--ip",
                b_ip,
                IMAGE,
                "sh",
                "-c",
                f"dnsd web.cauditd.test={b_ip} & exec sleep 900",
            ),
        ]
        pids = [int(docker("inspect", "-f", "{{.State.Pid}}", i)) for i in ids]
        server = subprocess.Popen(
            ["nsenter", "-t", str(pids[1]), "-n", "iperf3", "-s"], stdout=subprocess.DEVNULL
        )
        time.sleep(0.5)
        on_loop(monitor.start())
        infos = [ContainerInfo(id=i, pid=p) for i, p in zip(ids, pids, strict=True)]
        seconds, rounds = (2, 2) if quick else (5, 4)
        rates: dict[str, list[float]] = {"detached": [], "attached": []}
        for _ in range(rounds):
            for state in ("detached", "attached"):
                registry.items = list(infos) if state == "attached" else []
                want = len(infos) if state == "attached" else 0
                while len(monitor.attached()) != want:  # the monitor polls every 0.5 s
                    time.sleep(0.05)
                rates[state].append(iperf(pids[0], b_ip, seconds))
        base, probed = (statistics.median(rates[s]) for s in ("detached", "attached"))
        print(
            f"iperf3 TCP A->B: detached {base / 1e9:.2f} Gbit/s, attached {probed / 1e9:.2f} "
            f"Gbit/s, ratio {probed / base:.3f} (median of {rounds} x {seconds} s)"
        )
        figures: dict[str, object] = {"detached": base, "attached": probed, "rounds": rounds,
                                      "seconds": seconds}
        count = 5000 if quick else 20000
        for unique in (False, True):
            figures["dns_unique" if unique else "dns_same"] = dns_round(
                monitor, events, pids[0], b_ip, count, unique)
        server.terminate()
        server.wait()
        return figures
    finally:
        on_loop(monitor.stop())
        loop.call_soon_threadsafe(loop.stop)
        subprocess.run(["docker", "rm", "-f", *names], capture_output=True, timeout=120)
        subprocess.run(["docker", "network", "rm", net], capture_output=True, timeout=60)


def dns_round(monitor: NetworkMonitor, events: list[Event], client_pid: int, server_ip: str,
              count: int, unique: bool) -> dict[str, float]:
    """One DNS burst; how many messages were parsed, how fast, and how many were lost."""
    mark, lost_before = len(events), sum(monitor.probes.lost().values())
    began = time.monotonic()
    answered, elapsed = dns_blast(client_pid, server_ip, count, unique=unique)
    sent = count + answered
    deadline = time.monotonic() + 30
    parsed = 0
    while time.monotonic() < deadline:
        parsed = sum(1 for e in events[mark:] if isinstance(e, DnsEvent))
        if parsed >= sent:
            break
        time.sleep(0.05)
    done = time.monotonic() - began
    lost = sum(monitor.probes.lost().values()) - lost_before
    print(f"DNS ({'unique names' if unique else 'one name'}): {count} queries, {answered} "
          f"answers in {elapsed:.2f} s ({sent / elapsed:.0f} packets/s); parsed {parsed} of "
          f"{sent} in {done:.2f} s ({parsed / done:.0f}/s); lost {lost}; backlog dropped "
          f"{monitor.counters['dns_backlog_dropped']}")
    return {"sent": sent, "parsed": parsed, "lost": lost, "burst_s": elapsed,
            "parse_s": done, "rate": parsed / done}


def run(quick: bool) -> list[Result]:
    """bench/run.py's entry: one table of throughput and one of DNS capacity."""
    f = main(quick)
    tcp = Result(
        title="Network probe: iperf3 TCP between two containers",
        columns=["tc programs", "Gbit/s (median)"],
        rows=[["detached", f"{f['detached'] / 1e9:.2f}"],  # type: ignore[operator]
              ["attached", f"{f['attached'] / 1e9:.2f}"]],  # type: ignore[operator]
        notes=[f"ratio attached/detached {f['attached'] / f['detached']:.3f}, "  # type: ignore[operator]
               f"alternating, {f['rounds']} x {f['seconds']} s each"],
    )
    rows = []
    for key, label in (("dns_same", "one name (parse cache hits)"),
                       ("dns_unique", "a unique name per query")):
        d: dict[str, float] = f[key]  # type: ignore[assignment]
        rows.append([label, f"{d['sent']:.0f}", f"{d['sent'] / d['burst_s']:.0f}",
                     f"{d['parsed']:.0f}", f"{d['rate']:.0f}", f"{d['lost']:.0f}"])
    dns_table = Result(
        title="Network probe: DNS burst parsed with scapy",
        columns=["queries", "messages", "sent/s", "parsed", "parsed/s", "lost in kernel"],
        rows=rows,
        notes=["the ring reader only copies records out; a parser thread parses with scapy "
               "(identical payloads, less their id, once)"],
    )
    return [tcp, dns_table]


if __name__ == "__main__":
    main("--quick" in sys.argv)
