"""Event throughput: the highest openat rate the whole daemon path takes with zero loss, and the
loss curve above it, next to the decode path alone.

Daemon path: `cauditd run` with its default configuration and the full default rule set (ring
buffer, decode, container enrichment, process table, rule matching), except that the kernel
filters are off (probes.kernel_filters = false): the workload opens /etc/passwd, which no rule
watches, so with the open filter on not one of its opens would leave the kernel and there would
be nothing to measure. This is the user-space pipeline's capacity for events that do reach it,
counted through GET /v1/stats (`probes.syscall.events` delivered past enrichment,
`probes.syscall.lost` counted in the kernel plus `shed`, what the reader sheds from a container
it cannot follow). The daemon path runs twice: with the compiled record decoder (the default,
cauditd/probes/_fastrecords.c) and with `probes.compiled_decoder = false` (records.py alone), its
baseline in the same run. Decode path: SyscallProbes in this process with
the same syscalls enabled and a sink that only counts (bench_consumer's live mode). Workload:
`bench_loop open SECONDS RATE` in a --network none container, at fixed rates and then unpaced.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    PREFIX,
    REPO,
    TEST_IMAGE,
    CauditdProcess,
    Containers,
    Result,
    Unavailable,
    median,
    not_available,
    proc_cpu_seconds,
    require_docker,
    require_root,
    save_plot,
    si,
)

TITLE = "Event throughput (openat, zero loss and the loss curve)"
WORKLOAD = "tput"
SETTLE_S = 1.2  # longer than the daemon's housekeeping interval, which reads the loss counter
TARGET = 250_000


@dataclass
class Point:
    """One workload run at one asked rate: what was offered, processed and lost."""

    asked: int  # ops/s asked of bench_loop; 0 = unpaced
    ops_rate: float  # ops/s the workload achieved
    processed: int
    lost: int
    seconds: float
    cpu_s: float  # CPU time of the consumer (daemon, or this process) meanwhile

    @property
    def offered(self) -> float:
        """Events/s the kernel produced for the consumer: processed plus lost."""
        return (self.processed + self.lost) / self.seconds

    @property
    def rate(self) -> float:
        return self.processed / self.seconds

    @property
    def per_core(self) -> float:
        return self.processed / self.cpu_s if self.cpu_s else float("nan")


def run(quick: bool) -> list[Result]:
    try:
        require_root()
        require_docker()
        rates = (
            (50_000, 100_000, 0)
            if quick
            else (10_000, 25_000, 50_000, 75_000, 100_000, 150_000, 200_000, 0)
        )
        seconds, rounds = (1.5, 1) if quick else (3.0, 2)
        with Containers() as containers:
            containers.start(WORKLOAD, ["sleep", "900"], ["--network", "none"])
            daemon_runs, syscalls = daemon_path(containers, rates, seconds, rounds, "compiled")
            python_runs, _ = daemon_path(containers, rates, seconds, rounds, "python")
            decode_runs = asyncio.run(decode_path(syscalls, rates, seconds, rounds))
    except Unavailable as exc:
        return [not_available(TITLE, str(exc))]
    return [
        table(
            {"daemon (full rule set)": daemon_runs,
             "daemon, records decoded in Python": python_runs,
             "decode alone": decode_runs},
            seconds,
            rounds,
            syscalls,
        )
    ]


# --- the daemon path --------------------------------------------------------------------------


def daemon_path(
    containers: Containers, rates: Sequence[int], seconds: float, rounds: int, decoder: str
) -> tuple[list[Point], list[str]]:
    points: list[Point] = []
    compiled = "true" if decoder == "compiled" else "false"
    config = f"[probes]\nkernel_filters = false\ncompiled_decoder = {compiled}\n"
    with CauditdProcess(config) as daemon:
        time.sleep(1.0)
        syscall = stats(daemon)["probes"]["syscall"]
        if syscall["decoder"] != decoder:
            raise Unavailable(f"the daemon decodes with {syscall['decoder']}, not {decoder} "
                              "(is the compiled decoder built? python3 hatch_build.py)")
        syscalls = list(syscall["syscalls_enabled"])
        if "openat" not in syscalls:
            raise Unavailable(f"the default rules do not enable openat ({syscalls})")
        for _ in range(rounds):
            for asked in rates:
                points.append(daemon_point(daemon, containers, asked, seconds))
    return points, syscalls


def daemon_point(
    daemon: CauditdProcess, containers: Containers, asked: int, seconds: float
) -> Point:
    before, cpu0 = counters(daemon), daemon.cpu_seconds()
    out = containers.exec(WORKLOAD, loop_command(seconds, asked), timeout=seconds + 60)
    after = settle(lambda: counters(daemon))
    return Point(
        asked,
        ops_rate(out),
        after[0] - before[0],
        after[1] - before[1],
        seconds,
        daemon.cpu_seconds() - cpu0,
    )


def stats(daemon: CauditdProcess) -> dict[str, Any]:
    with urllib.request.urlopen(f"{daemon.api}/v1/stats", timeout=5) as reply:
        return json.load(reply)  # type: ignore[no-any-return]


def counters(daemon: CauditdProcess) -> tuple[int, int]:
    """(syscall events delivered, syscall events lost in the kernel or shed) so far. A
    workload the daemon cannot follow is shed (cauditd.flood): that is loss too."""
    syscall = stats(daemon)["probes"]["syscall"]
    return int(syscall["events"]), int(syscall["lost"]) + int(syscall.get("shed", 0))


def settle(read: Callable[[], tuple[int, int]]) -> tuple[int, int]:
    """Wait out the backlog: until the counters stop moving (and the loss counter was read)."""
    time.sleep(SETTLE_S)
    last = read()
    for _ in range(30):
        time.sleep(0.3)
        now = read()
        if now == last:
            return now
        last = now
    return last


def loop_command(seconds: float, asked: int) -> str:
    return f"bench_loop open {seconds} {asked}" if asked else f"bench_loop open {seconds}"


def ops_rate(output: str) -> float:
    """ops/s from bench_loop's line `<mode> <ops> <seconds> <ops_per_second>`."""
    parts = output.split()
    if len(parts) != 4:
        raise Unavailable(f"unexpected bench_loop output: {output!r}")
    return float(parts[3])


# --- the decode path alone --------------------------------------------------------------------


async def decode_path(
    syscalls: Sequence[str], rates: Sequence[int], seconds: float, rounds: int
) -> list[Point]:
    from cauditd.config import ProbesConfig
    from cauditd.containers.registry import ContainerRegistry
    from cauditd.events import Event
    from cauditd.probes.syscall import SyscallProbes

    delivered = [0]

    def count(batch: list[Event]) -> None:
        delivered[0] += len(batch)

    config = ProbesConfig()
    probes = SyscallProbes(config, count)
    probes.set_syscalls(set(syscalls))
    await probes.start()
    registry = ContainerRegistry(config, [probes])
    points: list[Point] = []
    try:
        await registry.start()
        await asyncio.sleep(1.0)
        for _ in range(rounds):
            for asked in rates:
                probes.poll_lost()
                before, cpu0 = delivered[0], proc_cpu_seconds(os.getpid())
                out = await docker_exec(loop_command(seconds, asked), seconds + 60)
                await asyncio.sleep(SETTLE_S)
                lost = probes.poll_lost()
                points.append(
                    Point(
                        asked,
                        ops_rate(out),
                        delivered[0] - before,
                        lost,
                        seconds,
                        proc_cpu_seconds(os.getpid()) - cpu0,
                    )
                )
    finally:
        await probes.stop()
        await registry.stop()
    return points


async def docker_exec(script: str, timeout: float) -> str:
    proc = await asyncio.create_subprocess_exec(
        "docker", "exec", PREFIX + WORKLOAD, "sh", "-c", script,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    if proc.returncode != 0:
        raise Unavailable(f"`{script}` in {TEST_IMAGE} failed: {err.decode()[-300:]}")
    return out.decode()


# --- the table and the plot -------------------------------------------------------------------


def table(
    paths: dict[str, list[Point]], seconds: float, rounds: int, syscalls: Sequence[str]
) -> Result:
    result = Result(title=TITLE, columns=[
        "path", "asked ops/s", "workload ops/s", "offered events/s", "processed events/s",
        "lost", "events per CPU-second"])  # fmt: skip
    best: dict[str, float] = {}
    for label, points in paths.items():
        for asked in dict.fromkeys(p.asked for p in points):
            at = [p for p in points if p.asked == asked]
            lost = [p.lost for p in at]
            result.rows.append([
                label, si(asked) if asked else "unpaced",
                si(median([p.ops_rate for p in at])) + "/s",
                si(median([p.offered for p in at])) + "/s",
                si(median([p.rate for p in at])) + "/s",
                ", ".join(f"{n:,}" for n in lost),
                si(median([p.per_core for p in at])) + "/s",
            ])  # fmt: skip
        best[label] = zero_loss_rate(points)
    result.data["zero_loss_events_s"] = best
    result.notes += [
        "Highest offered rate processed with zero loss in every run at that rate and below: "
        + "; ".join(f"{label} **{si(rate)} events/s**" for label, rate in best.items())
        + f" (target {si(TARGET)}/s per core; on this 2-core machine the workload and the "
        "consumer share the cores, so 'events per CPU-second' is the consumer's rate per core).",
        f"{rounds} round(s) of {seconds:.0f} s per rate; lost lists each run. Enabled syscalls "
        f"(from the default rules): {', '.join(syscalls)}. Offered = processed + lost; the "
        "daemon also counts events of other containers running on the machine meanwhile.",
    ]
    try:
        result.plots.append(plot(paths))
    except ImportError:
        result.notes.append("no plot: matplotlib is not installed")
    return result


def zero_loss_rate(points: list[Point]) -> float:
    """The highest offered rate below which (asked rates in order) no run lost anything."""
    best = 0.0
    for asked in sorted({p.asked for p in points}, key=lambda a: a or float("inf")):
        at = [p for p in points if p.asked == asked]
        if any(p.lost for p in at):
            break
        best = max(best, median([p.offered for p in at]))
    return best


def plot(paths: dict[str, list[Point]]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    link = save_plot("throughput")
    fig, ax = plt.subplots(figsize=(6.5, 4))
    top = 0.0
    colors = ("tab:blue", "tab:green", "tab:orange")
    for (label, points), color in zip(paths.items(), colors, strict=False):
        ordered = sorted(points, key=lambda p: p.offered)
        xs = [p.offered / 1000 for p in ordered]
        top = max([top, *xs])
        ax.plot(
            xs,
            [p.rate / 1000 for p in ordered],
            marker="o",
            color=color,
            label=f"{label}: processed",
        )
        ax.plot(
            xs,
            [p.lost / p.seconds / 1000 for p in ordered],
            marker="x",
            linestyle="--",
            color=color,
            label=f"{label}: lost",
        )
    ax.plot([0, top], [0, top], color="grey", linewidth=0.8, label="processed = offered")
    ax.set_xlabel("offered events/s (thousands)")
    ax.set_ylabel("events/s (thousands)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(REPO / "docs" / link, dpi=100)
    plt.close(fig)
    return link


if __name__ == "__main__":
    for item in run("--quick" in sys.argv):
        print(item.markdown())
