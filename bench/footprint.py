"""Footprint: start-up to ready, RSS and CPU at idle and under load, RSS vs containers and rules.

Containers for the scaling table are busybox `sleep` containers with --network none, started in
parallel (bounded: they exit by themselves after 15 minutes) and removed at the end.
"""

from __future__ import annotations

import json
import sys
import tempfile
import threading
import time
import tomllib
import urllib.request
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    REPO,
    CauditdProcess,
    Containers,
    Result,
    Unavailable,
    median,
    not_available,
    require_docker,
    require_root,
    save_plot,
)

TITLE = "Footprint"
IDLE_TITLE = "Idle CPU and wakeups by thread"
SCALE_TITLE = "RSS vs number of containers"
RULES_TITLE = "RSS vs number of rules"
IDLE_S = 5.0


def run(quick: bool) -> list[Result]:
    try:
        require_root()
        require_docker()
    except Unavailable as exc:
        return [not_available(TITLE, str(exc))]
    results = basics(quick)
    results.append(guarded(SCALE_TITLE, lambda: containers_scaling(quick)))
    results.append(guarded(RULES_TITLE, lambda: rules_scaling(quick)))
    return results


def guarded(title: str, build: object) -> Result:
    try:
        return build()  # type: ignore[operator,no-any-return]
    except Unavailable as exc:
        return not_available(title, str(exc))


# --- start-up, idle, load ---------------------------------------------------------------------


@dataclass
class IdleSample:
    """One idle window: CPU (% of one core) and voluntary wakeups/s per thread label."""

    cpu: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    wakeups: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    events: int = 0

    @property
    def total_cpu(self) -> float:
        return sum(self.cpu.values())

    @property
    def total_wakeups(self) -> float:
        return sum(self.wakeups.values())


def basics(quick: bool) -> list[Result]:
    starts: list[float] = []
    idle: list[IdleSample] = []
    idle_rss: list[float] = []
    load_rss: list[float] = []
    load_cpu: list[float] = []
    idle_s = IDLE_S if not quick else IDLE_S / 2
    try:
        with Containers() as containers:
            containers.start("load", ["sleep", "900"], ["--network", "none"])
            for _ in range(2 if quick else 3):
                with CauditdProcess() as daemon:
                    starts.append(daemon.startup_s)
                    time.sleep(1.0)
                    idle.append(idle_sample(daemon, idle_s))
                    idle_rss.append(daemon.rss_mb())
                    cpu, rss = under_load(daemon, containers, 2.0 if quick else 4.0)
                    load_cpu.append(cpu)
                    load_rss.append(rss)
    except Unavailable as exc:
        return [not_available(TITLE, str(exc))]
    result = Result(title=TITLE, columns=["measure", "median", "runs"])
    rows = [
        ("start-up to ready (compile, load, attach)", starts, "{:.2f} s"),
        (f"RSS at idle ({idle_s:.1f} s after ready)", idle_rss, "{:.0f} MB"),
        (f"CPU at idle (over {idle_s:.1f} s)", [s.total_cpu for s in idle], "{:.2f}% of one core"),
        ("wakeups at idle", [s.total_wakeups for s in idle], "{:.0f} /s"),
        ("events processed during the idle windows", [s.events for s in idle], "{:.0f} events"),
        ("peak RSS under load (open+exec loops)", load_rss, "{:.0f} MB"),
        ("CPU under load (open+exec loops)", load_cpu, "{:.0f}% of one core"),
    ]
    for label, values, fmt in rows:
        runs = ", ".join(fmt.format(v).split()[0] for v in values)
        result.rows.append([label, fmt.format(median(values)), runs])
    result.data["idle_cpu_pct"] = median([s.total_cpu for s in idle])
    result.notes.append(
        "Each run starts a fresh `cauditd run` (default config, scratch state dir); CPU from "
        "/proc/PID/task/*/schedstat; "
        "RSS is VmRSS (it counts ring-buffer data pages twice: they are mapped twice). "
        "Idle means no workload of this benchmark; the daemon still sees every other "
        "container on the machine (events processed during the idle windows), so the least "
        "of the runs is the closest to a quiet host."
    )
    return [result, idle_table(idle)]


def idle_table(samples: list[IdleSample]) -> Result:
    result = Result(title=IDLE_TITLE, columns=["thread", "CPU (% of one core)", "wakeups/s"])
    labels = sorted(
        {k for s in samples for k in s.cpu},
        key=lambda k: -median([s.cpu.get(k, 0.0) for s in samples]),
    )
    for label in labels:
        cpu = [s.cpu.get(label, 0.0) for s in samples]
        wakeups = [s.wakeups.get(label, 0.0) for s in samples]
        result.rows.append(
            [label, f"{median(cpu):.2f}% ({min(cpu):.2f}-{max(cpu):.2f})", f"{median(wakeups):.0f}"]
        )
    result.notes.append(
        "Medians over the footprint runs (range in brackets). Threads by their kernel comm: "
        "the ring buffer readers name themselves; `event loop` is the main thread (asyncio: "
        "housekeeping every 1 s, the network monitor's container poll every 0.5 s, the flow "
        "scrape every 5 s, alert outbox polls, API); `other threads` are the store writer, "
        "DNS parser and worker threads. The readers drain every 2 ms (5 ms for the network) "
        "while records flow, four times that while they trickle, and back off to 20 ms while "
        "none arrive (probes.ringbuf.PollInterval). "
        "The event loop's share grows with every container attached in the last "
        "network.inbound_learning_s (60 s): learning its listening ports asks sock_diag for "
        "them every 5 s, ~2 ms of CPU per container and sample here (network.listen), so "
        "other jobs' new containers show up here."
    )
    return result


def thread_times(pid: int) -> dict[int, tuple[str, float, int]]:
    """tid -> (kernel comm, CPU seconds, voluntary context switches)."""
    out: dict[int, tuple[str, float, int]] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            comm = (task / "comm").read_text().strip()
            cpu = int((task / "schedstat").read_text().split()[0]) / 1e9
            status = (task / "status").read_text().split("voluntary_ctxt_switches:")[1]
            out[int(task.name)] = (comm, cpu, int(status.split()[0]))
        except (OSError, ValueError, IndexError):
            continue
    return out


def idle_sample(daemon: CauditdProcess, seconds: float) -> IdleSample:
    events0 = events_seen(daemon)
    before, t0 = thread_times(daemon.pid), time.monotonic()
    time.sleep(seconds)
    after, t1 = thread_times(daemon.pid), time.monotonic()
    sample = IdleSample(events=events_seen(daemon) - events0)
    main_comm = after.get(daemon.pid, ("cauditd", 0.0, 0))[0]
    for tid, (comm, cpu, switches) in after.items():
        _c, cpu0, switches0 = before.get(tid, (comm, 0.0, 0))
        label = (
            "event loop" if tid == daemon.pid else ("other threads" if comm == main_comm else comm)
        )
        sample.cpu[label] += (cpu - cpu0) / (t1 - t0) * 100
        sample.wakeups[label] += (switches - switches0) / (t1 - t0)
    return sample


def events_seen(daemon: CauditdProcess) -> int:
    try:
        with urllib.request.urlopen(f"{daemon.api}/v1/stats", timeout=5) as reply:
            return sum(json.load(reply).get("events_by_type", {}).values())
    except (OSError, ValueError):
        return 0


def under_load(
    daemon: CauditdProcess, containers: Containers, seconds: float
) -> tuple[float, float]:
    """Run open and exec loops in a watched container; CPU % and peak RSS meanwhile."""
    peak = [daemon.rss_mb()]
    done = threading.Event()

    def watch_rss() -> None:
        while not done.wait(0.1):
            peak.append(daemon.rss_mb())

    watcher = threading.Thread(target=watch_rss, daemon=True)
    watcher.start()
    cpu0, t0 = daemon.cpu_seconds(), time.monotonic()
    half = seconds / 2
    containers.exec("load", f"bench_loop open {half}; bench_loop exec {half}")
    cpu1, t1 = daemon.cpu_seconds(), time.monotonic()
    done.set()
    watcher.join()
    return (cpu1 - cpu0) / (t1 - t0) * 100, max(peak)


# --- scaling with containers ------------------------------------------------------------------


def containers_scaling(quick: bool) -> Result:
    steps = (10,) if quick else (10, 100, 300)
    points: list[tuple[int, float]] = []
    with Containers() as containers, CauditdProcess() as daemon:
        time.sleep(1.0)
        points.append((0, daemon.rss_mb()))
        running = 0
        for target in steps:
            start_idle(containers, range(running, target))
            running = target
            time.sleep(3.0)  # let the registry catch up with the runtime's events
            points.append((target, daemon.rss_mb()))
    result = Result(title=SCALE_TITLE, columns=["containers running", "cauditd RSS", "vs none"])
    base = points[0][1]
    for count, rss in points:
        result.rows.append([str(count), f"{rss:.0f} MB", f"+{rss - base:.1f} MB"])
    result.notes.append(
        "One daemon; busybox `sleep` containers (--network none) started in steps while it runs, "
        "RSS read 3 s after each step."
    )
    try:
        result.plots.append(plot_rss(points))
    except ImportError:
        result.notes.append("no plot: matplotlib is not installed")
    return result


def start_idle(containers: Containers, numbers: range) -> None:
    def one(i: int) -> None:
        containers.start(f"idle-{i}", ["sleep", "900"], ["--network", "none"])

    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(one, numbers))


def plot_rss(points: list[tuple[int, float]]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    link = save_plot("rss_containers")
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([p[0] for p in points], [p[1] for p in points], marker="o")
    ax.set_xlabel("containers running")
    ax.set_ylabel("cauditd RSS (MB)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(REPO / "docs" / link, dpi=100)
    plt.close(fig)
    return link


# --- scaling with rules -----------------------------------------------------------------------


def rules_scaling(quick: bool) -> Result:
    """RSS with the default rules plus generated variations of them (renamed copies)."""
    defaults = sorted((REPO / "rules").glob("*.toml"))
    if not defaults:
        raise Unavailable("no rule files in rules/ yet")
    base_rules = [r for f in defaults for r in tomllib.loads(f.read_text()).get("rules", [])]
    targets = (len(base_rules), 300) if quick else (len(base_rules), 100, 1000)
    result = Result(title=RULES_TITLE, columns=["rules loaded", "cauditd RSS", "start-up"])
    for target in targets:
        with tempfile.TemporaryDirectory(prefix="cauditd-bench-rules-") as tmp:
            extra = write_variations(Path(tmp), base_rules, target - len(base_rules))
            with CauditdProcess(rules_paths=[tmp]) as daemon:
                loaded = count_rules(daemon)
                if loaded is None:
                    raise Unavailable("the daemon does not list its rules at GET /v1/rules yet")
                if loaded < target:
                    raise Unavailable(
                        f"asked for {target} rules ({extra} generated), {loaded} loaded"
                    )
                time.sleep(1.0)
                result.rows.append(
                    [str(loaded), f"{daemon.rss_mb():.0f} MB", f"{daemon.startup_s:.2f} s"]
                )
    result.notes.append(
        "Variations are renamed copies of the default rules (same conditions), so the engine "
        "compiles and indexes them as distinct rules."
    )
    return result


def write_variations(folder: Path, rules: list[dict[str, object]], count: int) -> int:
    lines: list[str] = []
    written = 0
    while written < count:
        for rule in rules:
            if written >= count:
                break
            if any(
                isinstance(v, dict) or (isinstance(v, list) and v and isinstance(v[0], dict))
                for v in rule.values()
            ):
                continue
            lines.append("[[rules]]")
            for key, value in rule.items():
                if key == "name":
                    value = f"{value} (variation {written})"
                lines.append(f"{key} = {json.dumps(value)}")
            lines.append("")
            written += 1
        if not lines:
            break
    (folder / "variations.toml").write_text("\n".join(lines))
    return written


def count_rules(daemon: CauditdProcess) -> int | None:
    try:
        with urllib.request.urlopen(f"{daemon.api}/v1/rules", timeout=5) as reply:
            body = json.load(reply)
    except (OSError, ValueError):
        return None
    items = body.get("rules", body) if isinstance(body, dict) else body
    return len(items) if isinstance(items, list) else None


if __name__ == "__main__":
    for item in run("--quick" in sys.argv):
        print(item.markdown())
