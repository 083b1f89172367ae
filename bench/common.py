"""Shared by every benchmark: the Result table, statistics, test containers and a cauditd process.

Every bench module exposes `run(quick: bool) -> list[Result]`; bench/run.py collects them into
docs/performance.md. A table that cannot be measured here is a Result with `unavailable` set.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
PLOTS = DOCS / "performance"
TEST_IMAGE = os.environ.get("CAUDITD_TEST_IMAGE", "cauditd-test:latest")
CAUDITD = REPO / ".venv" / "bin" / "cauditd"
# Containers are named after the test image's checkout (cauditd-test-<name> gives
# cauditd-bench-<name>-...), so two checkouts benchmarking on one machine neither share nor
# remove each other's containers.
def _prefix(image: str) -> str:
    checkout = image.split(":")[0].removeprefix("cauditd-test").lstrip("-")
    return f"cauditd-bench-{checkout}-" if checkout else "cauditd-bench-"


PREFIX = _prefix(TEST_IMAGE)


class Unavailable(RuntimeError):
    """A benchmark cannot run on this machine or at this stage; the message says why."""


@dataclass(slots=True)
class Result:
    """One table of docs/performance.md: a title, columns, rows of text, notes and plots."""

    title: str
    columns: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)  # PNG paths relative to docs/
    unavailable: str = ""
    data: dict[str, object] = field(default_factory=dict)  # figures run.py summarises

    def markdown(self) -> str:
        lines = [f"### {self.title}", ""]
        if self.unavailable:
            lines += [f"Not available: {self.unavailable}", ""]
        if self.rows:
            lines.append("| " + " | ".join(self.columns) + " |")
            lines.append("|" + "---|" * len(self.columns))
            lines += ["| " + " | ".join(row) + " |" for row in self.rows]
            lines.append("")
        lines += [f"- {note}" for note in self.notes]
        if self.notes:
            lines.append("")
        lines += [f"![{self.title}]({plot})" for plot in self.plots]
        if self.plots:
            lines.append("")
        return "\n".join(lines)


def not_available(title: str, reason: str) -> Result:
    return Result(title=title, unavailable=reason)


# --- statistics -------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ratio_text(values: Sequence[float]) -> str:
    """`0.93x (0.90-0.95, n=5)`: the median ratio and the range of the runs."""
    if not values:
        return "n/a"
    return f"{median(values):.2f}x ({min(values):.2f}-{max(values):.2f}, n={len(values)})"


def rate_text(values: Sequence[float], unit: str = "/s") -> str:
    """`12.3k/s (+-4%, n=5)`: the median rate and half the range relative to it."""
    if not values:
        return "n/a"
    mid = median(values)
    spread = (max(values) - min(values)) / 2 / mid * 100 if mid else 0.0
    return f"{si(mid)}{unit} (±{spread:.0f}%, n={len(values)})"


def si(value: float) -> str:
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.3g}{suffix}"
    return f"{value:.3g}"


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (p99 of 50 samples is the largest but one)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(fraction * len(ordered) + 0.5)))
    return ordered[rank - 1]


# --- the machine ------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    """What the numbers were measured on."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    commit = run_text(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], check=False)
    return {
        "CPU": model or platform.processor() or "unknown",
        "cores": str(os.cpu_count()),
        "memory": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "kernel": platform.release(),
        "OS": _os_name(),
        "Python": platform.python_version(),
        "commit": commit.strip() or "unknown",
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def _os_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    return platform.system()


# --- processes and containers -----------------------------------------------------------------


def run_text(cmd: Sequence[str], *, timeout: float = 120, check: bool = True) -> str:
    """Run a command, return its stdout; raise Unavailable with its stderr when it fails."""
    try:
        done = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        if check:
            raise Unavailable(f"{cmd[0]}: {exc}") from exc
        return ""
    if check and done.returncode != 0:
        raise Unavailable(f"`{' '.join(cmd[:4])}` failed: {done.stderr.strip()[-300:]}")
    return done.stdout


def docker_problem() -> str | None:
    if shutil.which("docker") is None:
        return "docker is not installed (scripts/bootstrap.sh --test installs it)"
    if subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode != 0:
        return "the Docker engine does not answer (scripts/dockerd.sh starts it)"
    image = subprocess.run(["docker", "image", "inspect", TEST_IMAGE], capture_output=True)
    if image.returncode != 0:
        return f"test image {TEST_IMAGE} missing (scripts/test-image.sh builds it)"
    return None


def require_docker() -> None:
    problem = docker_problem()
    if problem:
        raise Unavailable(problem)


def require_root() -> None:
    if os.geteuid() != 0:
        raise Unavailable("needs root (eBPF, Docker)")


class Containers:
    """Starts containers named cauditd-bench-*; removes every one it started on exit."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.networks: list[str] = []

    def __enter__(self) -> Containers:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.remove_all()

    def start(self, name: str, command: Sequence[str], options: Sequence[str] = ()) -> str:
        """`docker run -d` of the test image; returns the container's full id."""
        full = PREFIX + name
        self.names.append(full)
        cmd = ["docker", "run", "-d", "--name", full, *options, TEST_IMAGE, *command]
        return run_text(cmd, timeout=60).strip()

    def exec(self, name: str, script: str, timeout: float = 300) -> str:
        return run_text(["docker", "exec", PREFIX + name, "sh", "-c", script], timeout=timeout)

    def network(self, name: str) -> str:
        full = PREFIX + name
        subprocess.run(["docker", "network", "rm", full], capture_output=True)
        run_text(["docker", "network", "create", "--driver", "bridge", full])
        self.networks.append(full)
        return full

    def ip(self, name: str) -> str:
        fmt = "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"
        return run_text(["docker", "inspect", "-f", fmt, PREFIX + name]).strip()

    def remove(self, names: Sequence[str]) -> None:
        for chunk in range(0, len(names), 50):
            part = list(names[chunk : chunk + 50])
            subprocess.run(["docker", "rm", "-f", *part], capture_output=True, timeout=300)
        self.names = [n for n in self.names if n not in set(names)]

    def remove_all(self) -> None:
        if self.names:
            self.remove(list(self.names))
        for net in self.networks:
            subprocess.run(["docker", "network", "rm", net], capture_output=True, timeout=60)
        self.networks = []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- a cauditd process ------------------------------------------------------------------------


class CauditdProcess:
    """`cauditd run --config <generated>` in a scratch state dir; ready when it logs so.

    `extra_toml` is appended to the generated config (sections the caller wants to set);
    `rules_options` are extra lines of its [rules] section.
    """

    READY = "cauditd ready"

    def __init__(
        self, extra_toml: str = "", *, rules_paths: Sequence[str] = (), rules_options: str = ""
    ) -> None:
        self.port = free_port()
        self._tmp = tempfile.TemporaryDirectory(prefix="cauditd-bench-")
        self.dir = Path(self._tmp.name)
        paths = ", ".join(f'"{p}"' for p in rules_paths)
        self.config = self.dir / "cauditd.toml"
        self.config.write_text(
            f'[daemon]\nstate_dir = "{self.dir / "state"}"\n\n'
            f'[api]\nlisten = "127.0.0.1:{self.port}"\n\n'
            f"[rules]\npaths = [{paths}]\n{rules_options}\n\n{extra_toml}"
        )
        self.proc: subprocess.Popen[str] | None = None
        self.startup_s = 0.0
        self.log: deque[str] = deque(maxlen=200)
        self._ready = threading.Event()

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 90) -> CauditdProcess:
        if not CAUDITD.exists():
            raise Unavailable(f"{CAUDITD} missing (scripts/bootstrap.sh installs the venv)")
        _exit_on_sigterm()
        began = time.monotonic()
        self.proc = subprocess.Popen(
            [str(CAUDITD), "run", "--config", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        threading.Thread(target=self._read_stderr, daemon=True).start()
        while not self._ready.wait(0.01):
            if self.proc.poll() is not None or time.monotonic() - began > timeout:
                tail = " | ".join(list(self.log)[-3:])
                self.stop()
                raise Unavailable(f"cauditd did not become ready: {tail[-400:]}")
        self.startup_s = time.monotonic() - began
        return self

    def _read_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line.rstrip())
            if self.READY in line:
                self._ready.set()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._tmp.cleanup()

    def __enter__(self) -> CauditdProcess:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def rss_mb(self) -> float:
        return proc_rss_mb(self.pid)

    def cpu_seconds(self) -> float:
        return proc_cpu_seconds(self.pid)


def _exit_on_sigterm() -> None:
    """A bench stopped with SIGTERM unwinds (SystemExit) so that its `with CauditdProcess()`
    and `finally` blocks stop the daemons it started, instead of leaving them tracing."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda _sig, _frame: sys.exit(128 + signal.SIGTERM))


def proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def proc_cpu_seconds(pid: int) -> float:
    """CPU time of all the process's threads, in ns resolution (schedstat), as seconds."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


# --- peers run as helper processes ------------------------------------------------------------


class HelperProcess:
    """Runs `python bench/<script>` (the floor or the naive tracer) until stopped.

    The script prints "ready" once attached and, after SIGINT, one summary line (`summary`).
    """

    def __init__(self, script: Path, *args: str) -> None:
        self.script = script
        self.args = args
        self.summary = ""
        self.proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> HelperProcess:
        self.proc = subprocess.Popen(
            [sys.executable, str(self.script), *self.args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if "ready" not in line:
            self.proc.kill()
            _out, err = self.proc.communicate()
            raise Unavailable(f"{self.script.name} did not start: {(line + err).strip()[-300:]}")
        return self

    def __exit__(self, *_exc: object) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        try:
            out, _err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _err = self.proc.communicate()
        self.summary = out.strip().splitlines()[-1] if out.strip() else ""


def save_plot(name: str) -> str:
    """Path for a PNG under docs/performance/, and its link relative to docs/."""
    PLOTS.mkdir(parents=True, exist_ok=True)
    return f"performance/{name}.png"


def print_results(results: Sequence[Result]) -> None:
    for result in results:
        print(result.markdown())
