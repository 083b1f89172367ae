"""Rule engine scaling: events/s through the default rule set, then 10/100/1000 generated rules.

Two series of generated rules: on the event types the workload produces (every rule is a
candidate for every event, so the cost grows with the count) and on event types it never
produces (the type index should keep those off the path, so the rate should stay flat).

Run: .venv/bin/python bench/bench_rules.py [--quick]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tests.rules.synth import (
    WORKER,
    connect,
    dns,
    execve,
    file_event,
    flow,
    open_read,
    open_write,
    syscall,
)

from cauditd.events import Event
from cauditd.rules import RuleEngine, default_rules_dir, load_ruleset
from common import Result, median, si


def workload() -> list[Event]:
    """A mix like a busy web container: mostly opens, some execs, connects, flows and DNS."""
    events: list[Event] = []
    for i in range(200):
        events += [
            open_read(f"/usr/share/nginx/html/page{i}.html", process=WORKER),
            open_read("/etc/passwd", process=WORKER),
            open_write(f"/tmp/cache/{i}", process=WORKER),
            file_event("unlink", f"/tmp/cache/{i}", process=WORKER),
            connect("10.0.0.7", 5432, process=WORKER),
            flow(f"10.0.{i % 4}.7", 443 + i % 3),
            dns(f"host{i}.svc.cluster.local"),
            syscall("dup2", {"oldfd": 4, "newfd": 1, "oldfd_is_socket": 0}, process=WORKER),
        ]
        if i % 4 == 0:
            events.append(execve("/usr/bin/curl", "curl", "-s", "http://10.0.0.7/health"))
    return events


TITLE = "Rule engine scaling (events/s through RuleEngine.match, one core)"
COUNTS = (10, 100, 1000)

# Conditions on the workload's own event types: each one is a candidate for its events.
SAME_TYPES = [
    ("evt.type in (open, openat) and fd.name startswith /opt/x{i}/", "%fd.name"),
    ("evt.type = execve and proc.name = tool{i} and proc.pname != sh", "%proc.cmdline"),
    ("evt.type = connect and fd.dport = {port}", "%fd.dip"),
    ("evt.type in (open, openat) and fd.filename in (f{i}.key, g{i}.pem)", "%fd.name"),
]
# The same shapes on syscalls the workload never makes: the type index should skip them.
OTHER_TYPES = [
    ("evt.type in (chmod, fchmodat) and fd.name startswith /opt/x{i}/", "%fd.name"),
    ("evt.type = ptrace and proc.name = tool{i} and proc.pname != sh", "%proc.cmdline"),
    ("evt.type in (mkdir, mkdirat) and fd.name startswith /srv/x{i}/", "%fd.name"),
    ("evt.type in (rename, renameat2) and fd.filename in (f{i}.key, g{i}.pem)", "%fd.name"),
]


def rate(engine: RuleEngine, events: list[Event], seconds: float) -> float:
    """Events/s matched over at least `seconds` (whole passes over the workload)."""
    match = engine.match
    done, start = 0, time.perf_counter()
    while True:
        for event in events:
            match(event)
        done += len(events)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return done / elapsed


def generated_rules(count: int, kinds: list[tuple[str, str]] = SAME_TYPES) -> str:
    """`count` rules cycling through `kinds`, none matching the workload."""
    parts = []
    for i in range(count):
        cond, out = kinds[i % len(kinds)]
        parts.append(
            f'[[rules]]\nname = "gen {i}"\ncondition = "{cond.format(i=i, port=20000 + i)}'
            f'"\noutput = "{out}"\npriority = "warning"\n'
        )
    return "\n".join(parts)


def measure(ruleset: object, events: list[Event], seconds: float, repeats: int) -> list[float]:
    engine = RuleEngine(ruleset, suppress_window_s=60)  # type: ignore[arg-type]
    rate(engine, events[:500], 0.05)  # warm up
    return [rate(engine, events, seconds) for _ in range(repeats)]


def run(quick: bool) -> list[Result]:
    events = workload()
    seconds, repeats = (0.3, 1) if quick else (1.0, 3)
    default = load_ruleset([default_rules_dir()])
    result = Result(
        title=TITLE,
        columns=["rules", "on the workload's event types", "on other event types", "load+compile"],
    )
    result.rows.append(
        [
            f"default rule set ({len(default)})",
            cell(measure(default, events, seconds, repeats)),
            "",
            "",
        ]
    )
    series: dict[str, dict[int, float]] = {"same": {}, "other": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for count in COUNTS:
            row, load_ms = [f"{count} generated"], 0.0
            for name, kinds in (("same", SAME_TYPES), ("other", OTHER_TYPES)):
                path = Path(tmp) / f"{name}{count}.toml"
                path.write_text(generated_rules(count, kinds))
                began = time.perf_counter()
                ruleset = load_ruleset([path])
                load_ms = max(load_ms, (time.perf_counter() - began) * 1000)
                rates = measure(ruleset, events, seconds, repeats)
                series[name][count] = median(rates)
                row.append(cell(rates))
            result.rows.append([*row, f"{load_ms:.0f} ms"])
    result.data["rules_scaling"] = series
    result.notes += notes(series, len(events), repeats)
    return [result]


def cell(rates: list[float]) -> str:
    mid = median(rates)
    spread = (max(rates) - min(rates)) / 2 / mid * 100 if mid else 0.0
    return f"{si(mid)}/s (±{spread:.0f}%, n={len(rates)})"


def notes(series: dict[str, dict[int, float]], size: int, repeats: int) -> list[str]:
    same, other = series["same"], series["other"]
    low, high = COUNTS[0], COUNTS[-1]
    return [
        f"Workload: {size} synthetic events like a busy web container (opens, unlinks, "
        "connects, dup2, execs, flows, DNS), matched in a loop; no rule matches any of them, "
        f"so every figure is the cost of ruling events out. Median of {repeats} run(s).",
        f"Same event types: {low} -> {high} rules divides the rate by "
        f"{same[low] / same[high]:.0f} (every rule is a candidate for the events of its type "
        "and its condition is evaluated: cost linear in the rules per type). Other event "
        f"types: {low} -> {high} rules changes it by {other[high] / other[low]:.2f}x (the "
        "type index never hands those rules an event: flat). What keeps a large rule set "
        "cheap is spreading it over types, or indexing inside a type (e.g. on fd.name "
        "prefixes or proc.name), not the number of rules as such.",
    ]


def main() -> None:
    for result in run("--quick" in sys.argv):
        print(result.markdown())


if __name__ == "__main__":
    main()
