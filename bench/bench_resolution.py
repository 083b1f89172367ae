"""What reading the kernel's view costs: the open and exec loops, CPU per operation, under
cauditd with its kernel structs (resolved paths, fd kinds, compat calls, exe identity) and
without them (paths as written: what it did before, and does without BTF), beside bare.

CPU time per operation (user + system of the loop and its children, from busybox `time` in
the container) rather than throughput: the probes run in the traced process's context, so
their cost is its CPU time, and CPU time does not move when other jobs take the machine's
cores (wall-clock rates on a shared 2-core VM do: see the overhead table's ranges). Rounds
alternate the three setups; reported are medians and the ratio to bare of the same round.

Run: CAUDITD_TEST_IMAGE=... .venv/bin/python bench/bench_resolution.py [--quick]
"""

from __future__ import annotations

import contextlib
import re
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

TITLE = "Kernel-side path resolution: CPU per operation (watched / bare)"
LOOPS = ("open", "exec")
SETUPS = ("bare", "cauditd", "cauditd, paths as written")
TIME_LINE = re.compile(r"^(real|user|sys)\s+(?:(\d+)m\s*)?([\d.]+)s", re.M)


@contextlib.contextmanager
def setup(name: str) -> Iterator[None]:
    if name == "bare":
        yield
        return
    extra = "" if name == "cauditd" else "[probes]\nkernel_structs = false\n"
    with CauditdProcess(extra):
        time.sleep(0.5)  # let the registry classify the running container
        yield


def cpu_per_op(containers: Containers, loop: str, seconds: float) -> float:
    """Microseconds of CPU (user + sys, children included) per loop operation."""
    out = containers.exec("loops", f"time bench_loop {loop} {seconds} 2>&1")
    ops = int(next(line.split()[1] for line in out.splitlines()
                   if line.startswith(loop + " ")))
    cpu = sum(float(m[2] or 0) * 60 + float(m[3]) for m in TIME_LINE.finditer(out)
              if m[1] in ("user", "sys"))
    return cpu / max(ops, 1) * 1e6


def measure(containers: Containers, rounds: int, seconds: float,
            ) -> dict[str, dict[str, list[float]]]:
    """us[setup][loop] = one CPU-per-op figure per round."""
    us: dict[str, dict[str, list[float]]] = {s: {loop: [] for loop in LOOPS} for s in SETUPS}
    for round_no in range(rounds):
        order = SETUPS[round_no % 3:] + SETUPS[:round_no % 3]
        for name in order:
            with setup(name):
                for loop in LOOPS:
                    us[name][loop].append(cpu_per_op(containers, loop, seconds))
    return us


def table(us: dict[str, dict[str, list[float]]], rounds: int, seconds: float) -> Result:
    result = Result(title=TITLE, columns=["loop", "bare us/op", "cauditd",
                                          "cauditd, paths as written"])

    def ratios(name: str, loop: str) -> list[float]:
        return [w / b for w, b in zip(us[name][loop], us["bare"][loop], strict=True) if b]

    for loop in LOOPS:
        result.rows.append([f"{loop} loop", f"{median(us['bare'][loop]):.2f}",
                            ratio_text(ratios("cauditd", loop)),
                            ratio_text(ratios("cauditd, paths as written", loop))])
    result.data["us_per_op"] = {name: {loop: median(v) for loop, v in loops.items()}
                                for name, loops in us.items()}
    result.notes.append(
        f"{rounds} rounds of {seconds}s per loop and setup; ratio = CPU per operation watched / "
        "bare in the same round (higher costs more). The open loop opens /etc/passwd (no rule "
        "watches it: dropped in the kernel, after the path walk with the kernel's structs, "
        "before it without); the exec loop forks and execs /bin/true (every exec is sent).")
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
            us = measure(containers, rounds, seconds)
        except Unavailable as exc:
            return [not_available(TITLE, str(exc))]
    return [table(us, rounds, seconds)]


if __name__ == "__main__":
    for item in run("--quick" in sys.argv):
        print(item.markdown())
