"""What reading the kernel's view costs: the open, exec and connect loops, CPU per operation,
under cauditd with its kernel structs (resolved paths, fd kinds from the fd table, compat
calls, exe identity) and without them (paths as written, fds as socket() taught them: what it
did before, and does without BTF), beside bare.

CPU time per operation (user + system of the loop and its children, from busybox `time` in
the container) rather than throughput: the probes run in the traced process's context, so
their cost is its CPU time, and CPU time does not move when other jobs take the machine's
cores (wall-clock rates on a shared 2-core VM do: see the overhead table's ranges). Rounds
alternate the three setups; reported are medians and the ratio to bare of the same round.

Where the watched loops' extra CPU goes: with kernel.bpf_stats_enabled the kernel counts each
program's runs and run time, so the table also gives the probes' nanoseconds per operation
(sys_enter + sys_exit, the tail-called open handler counted in sys_exit) beside the bare
operation's CPU. Program names come from bpftool; without it that column says so.

Run: CAUDITD_TEST_IMAGE=... .venv/bin/python bench/bench_resolution.py [--quick]
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    CauditdProcess,
    Containers,
    Result,
    Unavailable,
    median,
    not_available,
    ratio_text,
    require_docker,
    require_root,
)

TITLE = "Reading the kernel's view (paths, fds): CPU per operation (watched / bare)"
LOOPS = ("open", "exec", "connect")
SETUPS = ("bare", "cauditd", "cauditd, paths as written")
TIME_LINE = re.compile(r"^(real|user|sys)\s+(?:(\d+)m\s*)?([\d.]+)s", re.M)


BPF_STATS = Path("/proc/sys/kernel/bpf_stats_enabled")
FDINFO_FIELD = re.compile(r"^(prog_id|run_time_ns|run_cnt):\s+(\d+)$", re.M)


@contextlib.contextmanager
def bpf_stats() -> Iterator[None]:
    """Have the kernel count every BPF program's runs and run time meanwhile."""
    before = BPF_STATS.read_text().strip()
    BPF_STATS.write_text("1")
    try:
        yield
    finally:
        BPF_STATS.write_text(before)


def program_names() -> dict[int, str]:
    """Loaded BPF programs' names by id (bpftool's; empty without it)."""
    try:
        out = subprocess.run(
            ["bpftool", "prog", "show", "--json"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    return {int(p["id"]): str(p.get("name", "?")) for p in json.loads(out)}


def program_times(pid: int) -> dict[int, tuple[int, int]]:
    """(run time ns, runs) by program id, of the programs process `pid` holds."""
    found = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            fields = dict(FDINFO_FIELD.findall(Path(f"/proc/{pid}/fdinfo/{fd}").read_text()))
            if "run_cnt" in fields:  # a program's fd (a link's names its program too)
                found[int(fields["prog_id"])] = (
                    int(fields.get("run_time_ns", 0)),
                    int(fields.get("run_cnt", 0)),
                )
    return found


@contextlib.contextmanager
def setup(name: str) -> Iterator[CauditdProcess | None]:
    if name == "bare":
        yield None
        return
    extra = "" if name == "cauditd" else "[probes]\nkernel_structs = false\n"
    with CauditdProcess(extra) as daemon:
        time.sleep(0.5)  # let the registry classify the running container
        yield daemon


def run_loop(containers: Containers, loop: str, seconds: float) -> tuple[int, float]:
    """Operations done and microseconds of CPU (user + sys, children included) per one."""
    out = containers.exec("loops", f"time bench_loop {loop} {seconds} 2>&1")
    ops = int(next(line.split()[1] for line in out.splitlines() if line.startswith(loop + " ")))
    cpu = sum(
        float(m[2] or 0) * 60 + float(m[3])
        for m in TIME_LINE.finditer(out)
        if m[1] in ("user", "sys")
    )
    return ops, cpu / max(ops, 1) * 1e6


class Figures:
    """CPU per operation by setup and loop (one figure per round), and the probes' own
    nanoseconds per operation by setup, loop and program."""

    def __init__(self) -> None:
        self.us: dict[str, dict[str, list[float]]] = {s: {lp: [] for lp in LOOPS} for s in SETUPS}
        self.probe_ns: dict[str, dict[str, dict[str, list[float]]]] = {
            s: {lp: {} for lp in LOOPS} for s in SETUPS
        }

    def add_probes(
        self,
        name: str,
        loop: str,
        ops: int,
        before: dict[int, tuple[int, int]],
        after: dict[int, tuple[int, int]],
        names: dict[int, str],
    ) -> None:
        for prog, (ns, _runs) in after.items():
            spent = ns - before.get(prog, (0, 0))[0]
            if spent > 0 and ops:
                label = names.get(prog, str(prog))
                self.probe_ns[name][loop].setdefault(label, []).append(spent / ops)


def measure(containers: Containers, rounds: int, seconds: float) -> Figures:
    figures = Figures()
    for round_no in range(rounds):
        order = SETUPS[round_no % 3 :] + SETUPS[: round_no % 3]
        for name in order:
            with setup(name) as daemon:
                names = program_names() if daemon else {}
                for loop in LOOPS:
                    before = program_times(daemon.pid) if daemon else {}
                    ops, us = run_loop(containers, loop, seconds)
                    figures.us[name][loop].append(us)
                    if daemon:
                        figures.add_probes(
                            name, loop, ops, before, program_times(daemon.pid), names
                        )
    return figures


def probes_text(by_program: dict[str, list[float]]) -> str:
    """'sys_exit 1150 + sys_enter 110 ns' from the medians of ns per operation, busiest first
    (BCC names a tracepoint's program tracepoint__<category>__<event>, a raw tracepoint's
    after its event: the event is kept)."""
    if not by_program:
        return "n/a (no bpftool)"
    busy = sorted(((median(v), label) for label, v in by_program.items()), reverse=True)
    parts = [f"{label.rsplit('__', 1)[-1]} {ns:.0f}" for ns, label in busy if ns >= 1]
    return " + ".join(parts) + " ns"


def table(figures: Figures, rounds: int, seconds: float) -> Result:
    us = figures.us
    result = Result(
        title=TITLE,
        columns=[
            "loop",
            "bare us/op",
            "cauditd",
            "cauditd, paths as written",
            "probes per op (cauditd)",
            "probes per op (paths as written)",
        ],
    )

    def ratios(name: str, loop: str) -> list[float]:
        return [w / b for w, b in zip(us[name][loop], us["bare"][loop], strict=True) if b]

    for loop in LOOPS:
        result.rows.append(
            [
                f"{loop} loop",
                f"{median(us['bare'][loop]):.2f}",
                ratio_text(ratios("cauditd", loop)),
                ratio_text(ratios("cauditd, paths as written", loop)),
                probes_text(figures.probe_ns["cauditd"][loop]),
                probes_text(figures.probe_ns["cauditd, paths as written"][loop]),
            ]
        )
    result.data["us_per_op"] = {
        name: {loop: median(v) for loop, v in loops.items()} for name, loops in us.items()
    }
    result.data["probe_ns_per_op"] = {
        name: {
            loop: {label: median(v) for label, v in progs.items()} for loop, progs in loops.items()
        }
        for name, loops in figures.probe_ns.items()
    }
    result.notes.append(
        f"{rounds} rounds of {seconds}s per loop and setup; ratio = CPU per operation watched / "
        "bare in the same round (higher costs more). The open loop opens /etc/passwd (no rule "
        "watches it: dropped in the kernel, after the path walk with the kernel's structs, "
        "before it without); the exec loop forks and execs /bin/true (every exec is sent); the "
        "connect loop makes a socket, connects it to a closed port on 127.0.0.1 and closes it "
        "(no rule watches the port: dropped in the kernel after the destination's lookups and "
        "the check of fds 0 and 1 for pipes, which reads the fd table with the structs)."
    )
    result.notes.append(
        "Probes per op: each program's run time as the kernel counts it (bpf_stats, on in "
        "every setup of the run: it adds ~20 ns per program run to the watched loops alike) "
        "divided by the loop's operations, medians; the open loop makes an open and a close "
        "per operation, so its sys_enter and sys_exit each run twice, the connect loop three "
        "calls, three times."
    )
    return result


def run(quick: bool) -> list[Result]:
    try:
        require_root()
        require_docker()
    except Unavailable as exc:
        return [not_available(TITLE, str(exc))]
    rounds, seconds = (3, 0.5) if quick else (7, 2.0)
    with Containers() as containers:
        try:
            containers.start("loops", ["sleep", "3600"], ["--network", "none"])
            with bpf_stats():
                figures = measure(containers, rounds, seconds)
        except Unavailable as exc:
            return [not_available(TITLE, str(exc))]
    return [table(figures, rounds, seconds)]


if __name__ == "__main__":
    for item in run("--quick" in sys.argv):
        print(item.markdown())
