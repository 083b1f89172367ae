"""Events/s through the rule engine on one core: the default rule set, then 10/100/1000 rules.

Run: .venv/bin/python bench/bench_rules.py [--events N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

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


def rate(engine: RuleEngine, events: list[Event], total: int) -> float:
    match = engine.match
    rounds = max(1, total // len(events))
    start = time.perf_counter()
    for _ in range(rounds):
        for event in events:
            match(event)
    return rounds * len(events) / (time.perf_counter() - start)


def generated_rules(count: int) -> str:
    """`count` rules over common fields and types, none matching the workload."""
    kinds = [
        ("evt.type in (open, openat) and fd.name startswith /opt/x{i}/", "%fd.name"),
        ("evt.type = execve and proc.name = tool{i} and proc.pname != sh", "%proc.cmdline"),
        ("evt.type = connect and fd.dport = {port}", "%fd.dip"),
        ("evt.type in (open, openat) and fd.filename in (f{i}.key, g{i}.pem)", "%fd.name"),
    ]
    parts = []
    for i in range(count):
        cond, out = kinds[i % len(kinds)]
        parts.append(
            f'[[rules]]\nname = "gen {i}"\ncondition = "{cond.format(i=i, port=20000 + i)}'
            f'"\noutput = "{out}"\npriority = "warning"\n'
        )
    return "\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=300_000)
    args = parser.parse_args()
    events = workload()
    ruleset = load_ruleset([default_rules_dir()])
    engine = RuleEngine(ruleset, suppress_window_s=60)
    rate(engine, events, 10_000)
    print(
        f"default rule set ({len(ruleset)} rules): {rate(engine, events, args.events):,.0f} "
        "events/s"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for count in (10, 100, 1000):
            path = Path(tmp) / f"gen{count}.toml"
            path.write_text(generated_rules(count))
            start = time.perf_counter()
            generated = load_ruleset([path])
            load_s = time.perf_counter() - start
            engine = RuleEngine(generated, suppress_window_s=60)
            print(
                f"{count:>5} generated rules: {rate(engine, events, args.events):,.0f} events/s "
                f"(load+compile {load_s * 1000:.0f} ms)"
            )


if __name__ == "__main__":
    main()
