"""Workload overhead: containerised workloads bare, and watched by cauditd and by its peers.

Each round runs every workload once per watcher (bare, floor, cauditd, cauditd with its kernel
filters off, cauditd reading paths as written instead of the kernel's structs, naive tracer,
auditd), in an order rotated per round; a watched run is divided by the same round's bare run,
so slow drift of a shared 2-core machine cancels out. Reported: the median ratio and its range.
`--watchers "floor;cauditd;cauditd, paths as written"` measures only those (and bare).
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
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
    rate_text,
    ratio_text,
    require_docker,
    require_root,
    run_text,
    save_plot,
)

HERE = Path(__file__).resolve().parent
TITLE = "Workload overhead (throughput watched / bare)"
LOOPS = ("open", "exec", "connect")
AUDIT_KEY = "cauditd-bench"
AUDIT_SYSCALLS = ("open", "openat", "openat2", "execve", "execveat", "connect")
PATHS_AS_WRITTEN = "cauditd, paths as written"
WATCHERS = (
    "floor",
    "floor, per-syscall tracepoints",
    "cauditd",
    PATHS_AS_WRITTEN,
    "cauditd, kernel filters off",
    "naive tracer",
    "auditd",
)


class Plan:
    """How long each workload runs and how many rounds; --quick shrinks it."""

    def __init__(self, quick: bool) -> None:
        self.rounds = 3 if quick else 5
        self.loop_s = 0.3 if quick else 2.0
        self.web_s = 1 if quick else 3
        self.archive_copies = 4 if quick else 20
        self.app_iterations = 150 if quick else 600


# --- watchers ---------------------------------------------------------------------------------


@contextlib.contextmanager
def bare() -> Iterator[str]:
    yield ""


@contextlib.contextmanager
def watched_by_cauditd(extra_toml: str = "") -> Iterator[str]:
    with CauditdProcess(extra_toml) as daemon:
        time.sleep(0.5)  # let the registry classify the running containers
        yield f"ready in {daemon.startup_s:.1f}s"


def watched_by_cauditd_unfiltered() -> contextlib.AbstractContextManager[str]:
    """Every call of a needed syscall reaches user space, as before the open and connect
    filters."""
    return watched_by_cauditd("[probes]\nkernel_filters = false\n")


def watched_by_cauditd_unresolved() -> contextlib.AbstractContextManager[str]:
    """Without the kernel's structs (as without BTF): opens judged at entry by the path as
    written, no path walk, no fd kinds, no compat syscalls: what resolution costs."""
    return watched_by_cauditd("[probes]\nkernel_structs = false\n")


@contextlib.contextmanager
def watched_by_floor() -> Iterator[str]:
    with HelperProcess(HERE / "floor.py"):
        yield ""


@contextlib.contextmanager
def watched_by_floor_per_syscall() -> Iterator[str]:
    with HelperProcess(HERE / "floor.py", "--per-syscall"):
        yield ""


@contextlib.contextmanager
def watched_by_naive() -> Iterator[str]:
    helper = HelperProcess(HERE / "naive_tracer.py")
    with helper:
        yield ""
    NAIVE_SUMMARIES.append(helper.summary)


NAIVE_SUMMARIES: list[str] = []


class AuditdPeer:
    """auditd with syscall rules equivalent to cauditd's; rules removed and auditd stopped after.

    auditd is installed from Debian when missing. An auditd that was already running is left
    running (only our keyed rules are added and removed).
    """

    def __init__(self) -> None:
        self.started_pid = 0

    def prepare(self) -> None:
        if shutil.which("auditctl") is None:
            subprocess.run(
                ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "auditd"],
                capture_output=True,
                timeout=300,
                env={"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
            )
        if shutil.which("auditctl") is None:
            raise Unavailable("auditd is not installed and apt-get install auditd failed")

    @contextlib.contextmanager
    def watching(self) -> Iterator[str]:
        self._start_daemon()
        rule = ["auditctl", "-a", "always,exit", "-F", "arch=b64"]
        for name in AUDIT_SYSCALLS:
            rule += ["-S", name]
        try:
            run_text([*rule, "-k", AUDIT_KEY])
            yield ""
        finally:
            self.cleanup()

    def _running_pid(self) -> int:
        status = run_text(["auditctl", "-s"], check=False)
        match = re.search(r"^pid (\d+)", status, re.M)
        return int(match.group(1)) if match else 0

    def _start_daemon(self) -> None:
        if self._running_pid():
            return
        run_text(["auditd"])
        for _ in range(100):
            pid = self._running_pid()
            if pid:
                self.started_pid = pid
                return
            time.sleep(0.05)
        raise Unavailable("auditd did not register with the kernel")

    def cleanup(self) -> None:
        """Remove our rules; stop the auditd we started (by its pid)."""
        subprocess.run(["auditctl", "-D", "-k", AUDIT_KEY], capture_output=True, timeout=30)
        if self.started_pid:
            subprocess.run(["kill", "-TERM", str(self.started_pid)], capture_output=True)
            for _ in range(100):
                if not Path(f"/proc/{self.started_pid}").exists():
                    break
                time.sleep(0.05)
            self.started_pid = 0


# --- workloads --------------------------------------------------------------------------------


class Workloads:
    """The containers the workloads run in, created once for all rounds and watchers."""

    def __init__(self, containers: Containers, plan: Plan) -> None:
        self.containers = containers
        self.plan = plan
        self.web_ip = ""
        self.prefork_ip = ""
        self.wrk = shutil.which("wrk")

    def setup(self) -> None:
        c = self.containers
        c.start("loops", ["sleep", "3600"], ["--network", "none"])
        c.exec(
            "loops",
            f"mkdir -p /data && for i in $(seq 1 {self.plan.archive_copies}); do "
            "mkdir -p /data/d$i && cp -r /etc /bin/busybox /data/d$i/; done",
        )
        net = c.network("net")
        c.start("web", ["sh", "-c", WEB_SCRIPT], ["--network", net])
        self.web_ip = c.ip("web")
        c.start("prefork", ["sh", "-c", PREFORK_SCRIPT], ["--network", net])
        self.prefork_ip = c.ip("prefork")
        c.start("app", ["sleep", "3600"], ["--network", net])
        if not self.wrk:
            self.wrk = install_wrk()

    def run_once(self) -> dict[str, float]:
        """One run of every workload; returns operations per second by workload name."""
        t = self.plan.loop_s
        script = "; ".join(f"bench_loop {mode} {t}" for mode in LOOPS)
        script += (
            "; a=$(cut -d' ' -f1 /proc/uptime); tar czf /tmp/a.tgz /data;"
            " b=$(cut -d' ' -f1 /proc/uptime); echo archive 1 $a $b"
        )
        rates: dict[str, float] = {}
        for line in self.containers.exec("loops", script).splitlines():
            parts = line.split()
            if parts and parts[0] in LOOPS:
                rates[f"{parts[0]} loop"] = float(parts[3])
            elif parts and parts[0] == "archive":
                rates["archive (tar+gzip)"] = 1 / max(float(parts[3]) - float(parts[2]), 0.01)
        if self.wrk and self.web_ip:
            rates["web server (httpd+wrk)"] = self._web_rate(f"http://{self.web_ip}/index.html")
        if self.wrk and self.prefork_ip:
            url = f"http://{self.prefork_ip}:8080/index.html"
            rates["pre-forked server (4 workers+wrk)"] = self._web_rate(url)
        rates["shell app (file, exec, HTTP)"] = self._app_rate()
        return rates

    def _app_rate(self) -> float:
        """Iterations per second of a shell application doing mixed work (APP_SCRIPT)."""
        script = APP_SCRIPT.format(n=self.plan.app_iterations, url=f"http://{self.prefork_ip}:8080/")
        out = self.containers.exec("app", script)
        match = re.search(r"^app (\d+) ([\d.]+) ([\d.]+)$", out, re.M)
        if not match:
            raise Unavailable(f"the shell app printed no rate: {out[-200:]}")
        iterations, began, ended = int(match[1]), float(match[2]), float(match[3])
        return iterations / max(ended - began, 0.01)

    def _web_rate(self, url: str) -> float:
        out = run_text(
            [
                str(self.wrk),
                "-t1",
                "-c8",
                f"-d{self.plan.web_s}s",
                "--timeout",
                "2s",
                url,
            ],
            timeout=self.plan.web_s + 30,
        )
        match = re.search(r"Requests/sec:\s+([\d.]+)", out)
        if not match:
            raise Unavailable(f"wrk printed no rate: {out[-200:]}")
        return float(match.group(1))


WEB_SCRIPT = (
    "mkdir -p /www && head -c 4096 /dev/zero | tr '\\0' x > /www/index.html && "
    "exec httpd -f -p 80 -h /www"
)
# nginx's shape: a master and 4 long-lived workers accepting keep-alive connections, each
# request an open/fstat/sendfile/close of the file (tests/image/prefork_httpd.c).
PREFORK_SCRIPT = (
    "mkdir -p /www && head -c 4096 /dev/zero | tr '\\0' x > /www/index.html && "
    "exec prefork_httpd 8080 /www 4"
)
# A shell application's mixed work per iteration: append to a log, read it back with a
# separate program, fetch a page from the pre-forked server, compress it (3 execs, ~10 opens,
# one TCP connection). Prints "app <iterations> <start> <end>" (seconds of /proc/uptime).
APP_SCRIPT = (
    ": > /tmp/app.log; a=$(cut -d' ' -f1 /proc/uptime); i=0;"
    " while [ $i -lt {n} ]; do"
    " echo \"$i request served\" >> /tmp/app.log;"
    " /bin/grep -c served /tmp/app.log >/dev/null;"
    " /usr/bin/wget -q -O /tmp/page {url}index.html;"
    " /bin/gzip -c /tmp/page > /tmp/page.gz;"
    " i=$((i+1)); done;"
    " b=$(cut -d' ' -f1 /proc/uptime); echo app $i $a $b"
)


def install_wrk() -> str | None:
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "wrk"],
        capture_output=True,
        timeout=300,
        env={"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
    )
    return shutil.which("wrk")


# --- the benchmark ----------------------------------------------------------------------------


def watchers(
    auditd: AuditdPeer | None,
) -> dict[str, Callable[[], contextlib.AbstractContextManager[str]]]:
    table: dict[str, Callable[[], contextlib.AbstractContextManager[str]]] = {
        "bare": bare,
        "floor": watched_by_floor,
        "floor, per-syscall tracepoints": watched_by_floor_per_syscall,
        "cauditd": watched_by_cauditd,
        PATHS_AS_WRITTEN: watched_by_cauditd_unresolved,
        "cauditd, kernel filters off": watched_by_cauditd_unfiltered,
        "naive tracer": watched_by_naive,
    }
    if auditd is not None:
        table["auditd"] = auditd.watching
    return table


def measure(
    plan: Plan,
    workloads: Workloads,
    table: dict[str, Callable[[], contextlib.AbstractContextManager[str]]],
) -> tuple[dict[str, dict[str, list[float]]], dict[str, str]]:
    """rates[watcher][workload] = one rate per round; failures[watcher] = why it could not run."""
    names = list(table)
    rates: dict[str, dict[str, list[float]]] = {n: {} for n in names}
    failures: dict[str, str] = {}
    workloads.run_once()  # warm-up: page cache, httpd, first-exec costs; not counted
    for round_no in range(plan.rounds):
        order = names[round_no % len(names) :] + names[: round_no % len(names)]
        for name in order:
            if name in failures:
                continue
            try:
                with table[name]():
                    measured = workloads.run_once()
            except Unavailable as exc:
                failures[name] = str(exc)
                continue
            for workload, rate in measured.items():
                rates[name].setdefault(workload, []).append(rate)
    return rates, failures


def ratios(rates: dict[str, dict[str, list[float]]], watcher: str, workload: str) -> list[float]:
    base = rates["bare"].get(workload, [])
    seen = rates.get(watcher, {}).get(workload, [])
    return [w / b for w, b in zip(seen, base, strict=False) if b]


TW_REUSE = Path("/proc/sys/net/ipv4/tcp_tw_reuse")


@contextlib.contextmanager
def reused_time_wait() -> Iterator[None]:
    """net.ipv4.tcp_tw_reuse = 1 for the run, restored after.

    busybox httpd closes every connection, so each wrk request is a new connection from the
    host, and its TIME_WAIT lasts 60 s: a few runs exhaust the host's ephemeral ports, and
    later runs then crawl whichever watcher they measure (a bimodal bare rate). Reusing
    TIME_WAIT ports for new outgoing connections, as HTTP benchmarks usually do, avoids that.
    """
    before = TW_REUSE.read_text().strip()
    TW_REUSE.write_text("1")
    try:
        yield
    finally:
        TW_REUSE.write_text(before)


def run(quick: bool, only: Sequence[str] = ()) -> list[Result]:
    try:
        require_root()
        require_docker()
    except Unavailable as exc:
        return [not_available(TITLE, str(exc))]
    plan = Plan(quick)
    auditd: AuditdPeer | None = AuditdPeer()
    notes: list[str] = []
    try:
        assert auditd is not None
        auditd.prepare()
    except Unavailable as exc:
        notes.append(f"auditd: not available: {exc}")
        auditd = None
    with Containers() as containers, reused_time_wait():
        workloads = Workloads(containers, plan)
        try:
            workloads.setup()
        except Unavailable as exc:
            return [not_available(TITLE, f"workload containers: {exc}")]
        if not workloads.wrk:
            notes.append("web server: not available: wrk is not installed (apt-get install wrk)")
        table = watchers(auditd)
        if only:
            table = {name: make for name, make in table.items() if name == "bare" or name in only}
        try:
            rates, failures = measure(plan, workloads, table)
        finally:
            if auditd is not None:
                auditd.cleanup()
    return [table_result(plan, rates, failures, notes)]


def table_result(
    plan: Plan,
    rates: dict[str, dict[str, list[float]]],
    failures: dict[str, str],
    notes: list[str],
) -> Result:
    present = [w for w in WATCHERS if w in rates and w not in failures]
    result = Result(title=TITLE, columns=["workload", "bare ops/s", *present])
    result.data["bare_spread"] = {
        k: (max(v) - min(v)) / median(v) if v and median(v) else 1.0
        for k, v in rates["bare"].items()
    }
    result.data["ratios"] = {
        w: {k: median(ratios(rates, w, k)) for k in rates["bare"]} for w in present
    }
    for workload in rates["bare"]:
        row = [workload, rate_text(rates["bare"][workload])]
        row += [ratio_text(ratios(rates, w, workload)) for w in present]
        result.rows.append(row)
    for watcher, reason in failures.items():
        result.notes.append(f"{watcher}: not available: {reason}")
    result.notes += notes
    result.notes.append(
        f"{plan.rounds} rounds; loops run {plan.loop_s}s each, wrk {plan.web_s}s "
        "(1 thread, 8 connections, host to the web container's bridge IP), the archive job "
        f"tars and gzips {plan.archive_copies} copies of /etc and busybox; the pre-forked "
        "server is wrk against prefork_httpd (4 workers, keep-alive); the shell app runs "
        f"{plan.app_iterations} iterations of log append, grep, wget from the pre-forked "
        "server and gzip."
    )
    if NAIVE_SUMMARIES:
        result.notes.append("naive tracer, per run: " + "; ".join(NAIVE_SUMMARIES))
    with contextlib.suppress(Exception):
        result.plots.append(plot(rates, present))
    return result


def plot(rates: dict[str, dict[str, list[float]]], present: list[str]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    link = save_plot("overhead")
    workloads = list(rates["bare"])
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / max(len(present), 1)
    for i, watcher in enumerate(present):
        values = [median(ratios(rates, watcher, w)) for w in workloads]
        xs = [x + i * width for x in range(len(workloads))]
        ax.bar(xs, values, width, label=watcher)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks([x + width * (len(present) - 1) / 2 for x in range(len(workloads))])
    ax.set_xticklabels(workloads, fontsize=8)
    ax.set_ylabel("throughput watched / bare (median)")
    ax.set_ylim(0, 1.15)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(Path(__file__).resolve().parents[1] / "docs" / link, dpi=100)
    plt.close(fig)
    return link


if __name__ == "__main__":
    selected: list[str] = []
    if "--watchers" in sys.argv:
        selected = sys.argv[sys.argv.index("--watchers") + 1].split(";")
    for item in run("--quick" in sys.argv, selected):
        print(item.markdown())
