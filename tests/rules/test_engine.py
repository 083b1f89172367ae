"""RuleEngine: findings, output rendering, threshold, suppression, swap, needed_syscalls."""

from __future__ import annotations

from pathlib import Path

import pytest

from cauditd import metrics
from cauditd.events import ExecEvent
from cauditd.findings import Priority
from cauditd.rules import RuleEngine, load_ruleset
from cauditd.rules.fields import SYSCALL_TYPES
from tests.rules.helpers import engine_for, rule_toml, write
from tests.rules.synth import BASH, CONTAINER, dns, execve, flow, open_read


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_finding_shape(tmp_path: Path) -> None:
    out = "shell %proc.name parent=%proc.pname file=%fd.name in %container.name (%proc.aname[2])."
    engine = engine_for([write(tmp_path, "r.toml", rule_toml(
        "evt.type = execve", output=out, extra='tags = ["T1059"]'))])
    (finding,) = engine.match(execve("/bin/sh", "sh", "-c", "id", parent=BASH))
    assert finding.output == "shell sh parent=bash file=<NA> in web (nginx)."
    assert finding.output_fields == {"proc.name": "sh", "proc.pname": "bash", "fd.name": None,
                                     "container.name": "web", "proc.aname[2]": "nginx"}
    assert finding.priority is Priority.WARNING and finding.tags == ("T1059",)
    assert finding.container.id == CONTAINER.id[:12] and finding.container.pod == "web-0"
    assert finding.process is not None and finding.process.cmdline == "sh -c id"
    assert [p["name"] for p in finding.process.parents] == [
        "bash", "nginx", "containerd-shim"]
    assert finding.source == "syscall" and finding.count == 1


def test_network_finding_has_no_process(tmp_path: Path) -> None:
    engine = engine_for([write(tmp_path, "r.toml", rule_toml(
        "evt.type = flow_new", output="%fd.dip", extra='source = "network"'))])
    (finding,) = engine.match(flow("1.2.3.4", 80))
    assert finding.process is None and finding.output == "1.2.3.4"


def test_suppression_merges_repeats_within_window(tmp_path: Path) -> None:
    clock = Clock()
    engine = engine_for([write(tmp_path, "r.toml", rule_toml(
        "evt.type = execve", output="%proc.name pid=%proc.pid"))], window=60, clock=clock)
    first = engine.match(execve("/bin/sh", pid=1))
    assert len(first) == 1
    assert engine.match(execve("/bin/sh", pid=2)) == []  # pid is volatile: same key
    assert engine.match(execve("/bin/sh", pid=3)) == []
    assert len(engine.match(execve("/bin/ls"))) == 1  # other key fields: new finding
    updates = engine.drain_updates()
    assert updates == [first[0]] and first[0].count == 3
    assert engine.drain_updates() == []
    clock.now += 61
    assert len(engine.match(execve("/bin/sh"))) == 1


def test_suppress_by_and_zero_window(tmp_path: Path) -> None:
    path = write(tmp_path, "r.toml", rule_toml("evt.type = execve", output="%proc.name",
                                               extra='suppress_by = ["container.name"]'))
    engine = engine_for([path], window=60, clock=Clock())
    assert len(engine.match(execve("/bin/sh"))) == 1
    assert engine.match(execve("/bin/ls")) == []
    engine = engine_for([path], window=0)
    assert len(engine.match(execve("/bin/sh"))) == len(engine.match(execve("/bin/sh"))) == 1


def test_suppression_memory_is_bounded(tmp_path: Path) -> None:
    ruleset = load_ruleset([write(tmp_path, "r.toml", rule_toml(
        "evt.type = execve", output="%proc.exepath"))])
    engine = RuleEngine(ruleset, suppress_window_s=60, clock=Clock(), max_suppress_keys=10)
    for i in range(100):
        engine.match(execve(f"/bin/x{i}"))
    assert len(engine._suppressor.recent) == 10


@pytest.mark.parametrize(("threshold", "events", "fired_at"), [
    ('{ count = 3, within = "10s" }', [(0, "a"), (1, "a"), (2, "a"), (3, "a")], [2]),
    ('{ count = 3, within = "10s" }', [(0, "a"), (1, "a"), (20, "a"), (21, "a")], []),
    ('{ count = 3, within = "10s", distinct = "dns.qname" }',
     [(0, "a"), (1, "a"), (2, "b"), (3, "b"), (4, "c"), (5, "d")], [4]),
    ('{ count = 2, within = "10s", distinct = "dns.qname" }',
     [(0, "a"), (1, "b"), (2, "c"), (3, "d"), (12, "e"), (13, "f")], [1, 13]),
    ('{ count = 2, within = "1s", distinct = "dns.qname" }',
     [(0, "a"), (5, "b"), (10, "c")], []),
])
def test_threshold(tmp_path: Path, threshold: str, events: list[tuple[int, str]],
                   fired_at: list[int]) -> None:
    engine = engine_for([write(tmp_path, "r.toml", rule_toml(
        "evt.type = dns_query", output="%dns.qname",
        extra=f'source = "network"\nthreshold = {threshold}'))])
    fired = [t for t, name in events if engine.match(dns(name, ts_ns=t * 1_000_000_000))]
    assert fired == fired_at


def test_threshold_keys_are_bounded(tmp_path: Path) -> None:
    ruleset = load_ruleset([write(tmp_path, "r.toml", rule_toml(
        "evt.type = flow_new", output="%fd.dip", extra='source = "network"\nthreshold = '
        '{ count = 5, within = "10s", by = ["fd.dip"], max_keys = 8 }'))])
    engine = RuleEngine(ruleset, suppress_window_s=0)
    for i in range(50):
        engine.match(flow(f"10.0.0.{i}", 80))
    threshold = ruleset.rules[0].threshold
    assert threshold is not None and len(threshold.windows) == 8


def test_swap_is_atomic_and_counts_matches(tmp_path: Path) -> None:
    old = load_ruleset([write(tmp_path, "a.toml", rule_toml("evt.type = execve", name="old"))])
    new = load_ruleset([write(tmp_path, "b.toml", rule_toml("evt.type = openat", name="new"))])
    engine = RuleEngine(old, suppress_window_s=0)
    assert [f.rule for f in engine.match(execve("/bin/sh"))] == ["old"]
    engine.swap(new)
    assert engine.match(execve("/bin/sh")) == []
    assert [f.rule for f in engine.match(open_read("/x"))] == ["new"]
    assert engine.rules_info() == [{"name": "new", "description": "", "enabled": True,
                                    "priority": "Warning", "tags": [], "source": "syscall",
                                    "matches": 1}]


def test_needed_syscalls(tmp_path: Path) -> None:
    typed = write(tmp_path, "a.toml", rule_toml("evt.type in (execve, openat) and proc.name = x")
                  + rule_toml("evt.type = flow_new", name="n", extra='source = "network"')
                  + rule_toml("evt.type = ptrace", name="off", extra="enabled = false"))
    assert load_ruleset([typed]).needed_syscalls() == {"execve", "openat"}
    untyped = write(tmp_path, "b.toml", rule_toml("proc.name = x", name="any"))
    engine = engine_for([typed, untyped])
    assert engine.ruleset.needed_syscalls() == set(SYSCALL_TYPES)


def test_index_skips_rules_for_other_types(tmp_path: Path) -> None:
    ruleset = load_ruleset([write(tmp_path, "a.toml", rule_toml("evt.type = execve", name="e")
                                  + rule_toml("proc.name = sh", name="any"))])
    assert [r.name for r in ruleset.candidates(execve("/bin/sh"))] == ["e", "any"]
    assert [r.name for r in ruleset.candidates(open_read("/x"))] == ["any"]
    assert [r.name for r in ruleset.candidates(flow("1.1.1.1", 1))] == []


def test_rule_that_raises_is_counted_and_others_still_match(tmp_path: Path) -> None:
    ruleset = load_ruleset([write(tmp_path, "a.toml", rule_toml("evt.type = execve", name="bad")
                                  + rule_toml("evt.type = execve", name="good"))])

    def explode(event: object) -> bool:
        raise RuntimeError("boom")

    ruleset.rules[0].predicate = explode
    engine = RuleEngine(ruleset, suppress_window_s=0)
    before = metrics.REGISTRY.get_sample_value("cauditd_rule_errors_total", {"rule": "bad"}) or 0
    assert [f.rule for f in engine.match(execve("/bin/sh"))] == ["good"]
    after = metrics.REGISTRY.get_sample_value("cauditd_rule_errors_total", {"rule": "bad"})
    assert after == before + 1


def test_process_falls_back_to_comm_and_pid() -> None:
    event = ExecEvent(type="execve", ts_ns=1, pid=9, comm="sh", container=CONTAINER)
    from cauditd.rules.engine import process_ref

    ref = process_ref(event)
    assert ref is not None and ref.pid == 9 and ref.cmdline == "sh" and ref.parents == []
