"""What watching costs real servers, per request: the servers' own CPU, cauditd's CPU, and the
records cauditd receives, under busybox httpd (a fork per connection) and a pre-forked server
(4 long-lived workers, keep-alive), beside bare and the floor; and cauditd with its network
probes off, which tells the veth programs' share (per packet) from the syscall probes' share.

Per-request figures rather than throughput alone: the probes run in the server's context, so
their cost is the server container's CPU time (its cgroup's cpu.stat), and the daemon's cost is
its own CPU time above its idle rate (measured just before), counted until the run's closed
flows have ended (the flow table is read every few seconds: without the wait, a
fork-per-connection server's thousands of flows were billed to the next server measured);
both stay put when other jobs take the shared machine's cores, where
requests per second do not. Rounds rotate the setups; a watched figure is divided by the same
round's bare one. Records per request count every record the daemon decoded (other
containers on the host included: a floor, not noise, on a quiet machine).

Run: CAUDITD_TEST_IMAGE=... .venv/bin/python bench/bench_servers.py [--quick]
     [--setups "cauditd;floor, per-syscall tracepoints"] [--baseline DIR]
(--baseline: also "cauditd, baseline", the daemon of another checkout, e.g.
`git archive main | tar -x -C DIR`, in the same rounds: a before and after.)
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    CauditdProcess,
    Containers,
    HelperProcess,
    Result,
    Unavailable,
    median,
    not_available,
    ratio_text,
    require_docker,
    require_root,
    run_text,
)
from overhead import PREFORK_SCRIPT, WEB_SCRIPT, install_wrk, reused_time_wait

HERE = Path(__file__).resolve().parent
TITLE = "Servers: CPU and records per request (watched / bare)"
NO_NETWORK = "cauditd, network probes off"
SETUPS = ("bare", "floor", "floor, per-syscall tracepoints", "cauditd", NO_NETWORK)
# The flow table is read every 5 s (network.flow_scrape_interval_s) and a closed flow ends 2 s
# after its last packet: a run's closed flows have all ended 7 s after it.
SETTLE_S = 7.5
IDLE_S = 2.0  # the daemon's idle CPU, measured before each run, is taken off its figure
SERVERS = {"httpd (fork per connection)": ("web", 80), "pre-forked (4 workers)": ("prefork", 8080)}
EVENTS_LINE = re.compile(r'^cauditd_events_total\{probe="([^"]*)",type="([^"]*)"\} ([\d.e+]+)$',
                         re.M)


class Watch:
    """One setup's watcher; `daemon` is set for cauditd (its CPU and records are read)."""

    def __init__(self) -> None:
        self.daemon: CauditdProcess | None = None

    def cpu(self) -> float:
        return self.daemon.cpu_seconds() if self.daemon else 0.0

    def records(self) -> dict[str, float]:
        if self.daemon is None:
            return {}
        with urllib.request.urlopen(f"{self.daemon.api}/metrics", timeout=10) as answer:
            body = answer.read().decode()
        return {f"{probe}/{kind}": float(n) for probe, kind, n in EVENTS_LINE.findall(body)}

    def settle(self) -> None:
        """Wait until the daemon has read the flow table once the run's closed flows ended
        (FIN_LINGER after their last packet, at the next read): the CPU it spends on them then
        counts to this run, not to the next server's."""
        if self.daemon is not None:
            time.sleep(SETTLE_S)

    def idle_rate(self) -> float:
        """The daemon's CPU seconds per second with nothing to do (measured now)."""
        if self.daemon is None:
            return 0.0
        before = self.cpu()
        time.sleep(IDLE_S)
        return (self.cpu() - before) / IDLE_S


BASELINE = "cauditd, baseline"
BASELINE_DIR: list[str] = []  # --baseline DIR: another checkout's daemon/ and probes/


@contextlib.contextmanager
def baseline_checkout() -> Iterator[None]:
    """cauditd as another checkout has it (`git archive REV | tar -x -C DIR`), for a before and
    after measured in the same rounds: its daemon/ first on the daemon's PYTHONPATH."""
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(Path(BASELINE_DIR[0]) / "daemon")
    try:
        yield
    finally:
        if before is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = before


@contextlib.contextmanager
def watching(name: str) -> Iterator[Watch]:
    watch = Watch()
    if name == "bare":
        yield watch
    elif name.startswith("floor"):
        args = ("--per-syscall",) if "per-syscall" in name else ()
        with HelperProcess(HERE / "floor.py", *args):
            yield watch
    else:
        checkout = baseline_checkout() if name == BASELINE else contextlib.nullcontext()
        # without the veth programs: what the network view costs, apart from the syscalls'
        extra = "[network]\nenabled = false\n" if name == NO_NETWORK else ""
        with checkout, CauditdProcess(extra) as daemon:
            time.sleep(0.5)  # let the registry classify the running containers
            watch.daemon = daemon
            yield watch


def cgroup_cpu_s(container_id: str) -> float:
    """CPU seconds of a container's cgroup (cgroup v2 cpu.stat)."""
    for path in Path("/sys/fs/cgroup").glob(f"**/*{container_id}*/cpu.stat"):
        for line in path.read_text().splitlines():
            if line.startswith("usage_usec "):
                return int(line.split()[1]) / 1e6
    raise Unavailable(f"no cgroup cpu.stat for container {container_id[:12]}")


def wrk(wrk_path: str, url: str, seconds: int) -> tuple[int, float]:
    out = run_text([wrk_path, "-t1", "-c8", f"-d{seconds}s", "--timeout", "2s", url],
                   timeout=seconds + 30)
    done = re.search(r"(\d+) requests in", out)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not done or not rate:
        raise Unavailable(f"wrk printed no rate: {out[-200:]}")
    return int(done[1]), float(rate[1])


Sample = dict[str, float]


def measure_one(watch: Watch, wrk_path: str, url: str, container_id: str, seconds: int) -> Sample:
    idle = watch.idle_rate()
    began = time.monotonic()
    cpu0, daemon0, records0 = cgroup_cpu_s(container_id), watch.cpu(), watch.records()
    requests, rate = wrk(wrk_path, url, seconds)
    time.sleep(0.3)  # the daemon drains what the run left in the ring
    watch.settle()
    cpu1, daemon1, records1 = cgroup_cpu_s(container_id), watch.cpu(), watch.records()
    daemon_s = daemon1 - daemon0 - idle * (time.monotonic() - began)
    per_k = 1000 / max(requests, 1)
    sample = {"rate": rate, "server_us": (cpu1 - cpu0) * 1e6 / max(requests, 1),
              "daemon_ms_per_k": max(daemon_s, 0.0) * 1e3 * per_k}
    if watch.daemon is not None:  # no record counted yet is 0 records, not "not measured"
        sample["records_per_req"] = (sum(records1.values()) - sum(records0.values())) / max(
            requests, 1)
        for key, value in records1.items():
            sample[f"records {key}"] = (value - records0.get(key, 0.0)) / max(requests, 1)
    return sample


def measure(setups: tuple[str, ...], rounds: int, seconds: float,
            run_server: Callable[[Watch, str], Sample]) -> dict[str, dict[str, list[Sample]]]:
    samples: dict[str, dict[str, list[Sample]]] = {s: {k: [] for k in SERVERS} for s in setups}
    for round_no in range(rounds):
        order = setups[round_no % len(setups):] + setups[: round_no % len(setups)]
        for name in order:
            with watching(name) as watch:
                for server in SERVERS:
                    samples[name][server].append(run_server(watch, server))
    return samples


def table(samples: dict[str, dict[str, list[Sample]]], rounds: int, seconds: float) -> Result:
    result = Result(title=TITLE, columns=["server", "setup", "req/s vs bare",
                                          "server CPU/req vs bare", "bare us/req",
                                          "cauditd ms CPU per 1k req", "records/req"])
    bare = samples["bare"]
    for server in SERVERS:
        base = bare[server]
        for name, by_server in samples.items():
            if name == "bare":
                continue
            runs = by_server[server]
            rate = [s["rate"] / b["rate"] for s, b in zip(runs, base, strict=True)]
            cpu = [s["server_us"] / b["server_us"] for s, b in zip(runs, base, strict=True)]
            daemon = [s["daemon_ms_per_k"] for s in runs]
            records = [s.get("records_per_req", 0.0) for s in runs]
            result.data.setdefault("server_rates", {}).setdefault(server, {})[name] = median(rate)
            result.rows.append([server, name, ratio_text(rate), ratio_text(cpu),
                                f"{median([b['server_us'] for b in base]):.0f}",
                                f"{median(daemon):.1f} ({min(daemon):.1f}-{max(daemon):.1f})"
                                if runs[0].get("records_per_req") is not None else "-",
                                f"{median(records):.2f}" if "records_per_req" in runs[0] else "-"])
            kinds = sorted({k for s in runs for k in s if k.startswith("records ")})
            detail = {k.removeprefix("records "): median([s.get(k, 0.0) for s in runs])
                      for k in kinds}
            shown = ", ".join(f"{k} {v:.2f}" for k, v in detail.items() if v >= 0.01)
            if shown:
                result.notes.append(f"{server}, {name}: records per request by type: {shown}")
    result.notes.append(
        f"{rounds} rounds of wrk -t1 -c8 for {seconds}s per server and setup (host to the "
        "container's bridge IP); ratios to the same round's bare run (server CPU: higher "
        "costs more); cauditd's CPU and records include whatever else runs on the host; its "
        f"CPU is above its idle rate and includes reading the run's flows ({SETTLE_S} s after "
        "the run, when the closed ones have ended).")
    return result


def run(quick: bool, only: tuple[str, ...] = ()) -> list[Result]:
    try:
        require_root()
        require_docker()
    except Unavailable as exc:
        return [not_available(TITLE, str(exc))]
    rounds, seconds = (3, 2) if quick else (5, 4)
    setups = ("bare", *[s for s in SETUPS if s != "bare" and (not only or s in only)])
    if BASELINE_DIR:
        setups += (BASELINE,)
    wrk_path = shutil.which("wrk") or install_wrk()
    if not wrk_path:
        return [not_available(TITLE, "wrk is not installed (apt-get install wrk)")]
    with Containers() as containers, reused_time_wait():
        net = containers.network("servers")
        ids = {"web": containers.start("web", ["sh", "-c", WEB_SCRIPT], ["--network", net]),
               "prefork": containers.start("prefork", ["sh", "-c", PREFORK_SCRIPT],
                                           ["--network", net])}
        time.sleep(1)
        urls = {name: f"http://{containers.ip(name)}:{port}/index.html"
                for name, port in SERVERS.values()}

        def run_server(watch: Watch, server: str) -> Sample:
            name, _port = SERVERS[server]
            return measure_one(watch, wrk_path, urls[name], ids[name], seconds)

        for server in SERVERS:  # warm-up: page cache, first connections; not counted
            run_server(Watch(), server)
        try:
            samples = measure(setups, rounds, seconds, run_server)
        except Unavailable as exc:
            return [not_available(TITLE, str(exc))]
    return [table(samples, rounds, seconds)]


if __name__ == "__main__":
    chosen: tuple[str, ...] = ()
    if "--setups" in sys.argv:
        chosen = tuple(sys.argv[sys.argv.index("--setups") + 1].split(";"))
    if "--baseline" in sys.argv:
        BASELINE_DIR.append(sys.argv[sys.argv.index("--baseline") + 1])
    for item in run("--quick" in sys.argv, chosen):
        print(item.markdown())
