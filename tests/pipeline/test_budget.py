"""Finding budgets: a loop over distinct file names makes a bounded number of findings, and
every one of them is still counted (in a summary finding whose count grows)."""

from __future__ import annotations

from cauditd.budget import BUDGET_TAG, FindingBudget
from cauditd.config import RulesConfig
from cauditd.detection import Detector
from cauditd.findings import ContainerRef, Finding, Priority
from cauditd.store import FindingFilter, FindingStore
from tests.rules.synth import CONTAINER, open_write

WRITE_BELOW_ETC = "Write below etc"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def finding(rule: str, path: str, container: str = "a" * 64) -> Finding:
    return Finding(rule=rule, priority=Priority.ERROR, source="syscall", time_ns=1,
                   output=f"wrote {path}", output_fields={"fd.name": path},
                   container=ContainerRef(id=container[:12], full_id=container, name="web"),
                   key=f"{rule}\x1e{container}\x1e{path}")


def test_past_the_limit_findings_fold_into_one_summary_per_window() -> None:
    clock = Clock()
    budget = FindingBudget(3, 60, clock)
    admitted = [budget.admit(finding("R", f"/etc/{i}")) for i in range(10)]
    assert [a.output_fields["fd.name"] if a else None for a in admitted[:3]] == [
        "/etc/0", "/etc/1", "/etc/2"]
    summary = admitted[3]
    assert summary is not None and BUDGET_TAG in summary.tags and summary.priority == Priority.ERROR
    assert admitted[4:] == [None] * 6
    assert summary.count == 7 and summary.output_fields["budget.folded"] == 7
    assert summary.output_fields["fd.name"] == "/etc/9" and "latest: wrote /etc/9" in summary.output
    assert budget.drain() == [summary] and budget.folded == 7
    assert budget.admit(finding("other rule", "/etc/x")) is not None  # per rule
    assert budget.admit(finding("R", "/etc/y", container="b" * 64)) is not None  # per container
    clock.now = 61
    assert budget.admit(finding("R", "/etc/10")) is not None  # a new window


def test_no_budget_admits_everything() -> None:
    budget = FindingBudget(0, 60)
    assert all(budget.admit(finding("R", f"/etc/{i}")) is not None for i in range(100))


async def test_a_loop_of_distinct_names_makes_bounded_findings(store: FindingStore) -> None:
    detector = Detector(RulesConfig(paths=[], finding_budget=5), store)
    for i in range(1000):
        detector.process(open_write(f"/etc/cauditd-loop-{i}"))
    for _ in range(10):  # repeats of a folded finding count on its summary
        detector.process(open_write("/etc/cauditd-loop-999"))
    detector.flush_updates()
    await store.flush()
    found, _ = await store.query(FindingFilter(rules=(WRITE_BELOW_ETC,), limit=1000))
    assert len(found) == 6
    summary = next(f for f in found if BUDGET_TAG in f.tags)
    assert summary.count == 995 + 10 and summary.output_fields["budget.folded"] == 995
    assert summary.container.full_id == CONTAINER.id
    assert sum(f.count for f in found) == 1010
