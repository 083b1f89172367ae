"""The event pipeline: one event that raises never takes its batch with it; failures are
counted by stage and become a finding; load is attributed to the container that sent it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from cauditd.config import RulesConfig
from cauditd.detection import FAILURE_RULE, Detector
from cauditd.events import CgroupEvent, ContainerInfo, Event, FileEvent
from cauditd.pipeline import EventPipeline
from cauditd.proctable import ProcessTable
from cauditd.store import FindingFilter, FindingStore

WEB = ContainerInfo(id="a" * 64, name="web", cgroup_id=10)
FLOOD = ContainerInfo(id="f" * 64, name="flood", cgroup_id=20)


class Tree:
    def __init__(self) -> None:
        self.created_paths: dict[int, str] = {}

    def created(self, cgroup_id: int, path: str) -> None:
        self.created_paths[cgroup_id] = path


class Registry:
    """The registry as the pipeline sees it: two known cgroups, nothing pending."""

    def __init__(self) -> None:
        self.tree = Tree()
        self.on_metadata: list[Callable[[str], None]] = []
        self.by_cgroup = {WEB.cgroup_id: WEB, FLOOD.cgroup_id: FLOOD}

    def resolve(self, cgroup_id: int) -> ContainerInfo | None:
        if cgroup_id == 66:
            raise RuntimeError("registry broke on this cgroup")
        return self.by_cgroup.get(cgroup_id)

    def metadata_pending(self, container_id: str) -> bool:
        return False


class BrokenTable(ProcessTable):
    """Raises on pid 13, as the table once did on a comm that was not UTF-8."""

    def apply(self, event: Event) -> None:
        if getattr(event, "pid", 0) == 13:
            raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")
        super().apply(event)


def shadow_read(pid: int, cgroup_id: int = WEB.cgroup_id) -> FileEvent:
    return FileEvent(type="openat", ts_ns=pid, cgroup_id=cgroup_id, pid=pid, tid=pid,
                     comm="cat", path="/etc/shadow")


@pytest.fixture
def pipeline(store: FindingStore, tmp_path: Path) -> EventPipeline:
    detector = Detector(RulesConfig(), store)
    return EventPipeline(Registry(), BrokenTable(proc_root=str(tmp_path)), detector)


async def test_one_raising_event_never_takes_its_batch(
    pipeline: EventPipeline, store: FindingStore
) -> None:
    seen: list[int] = []
    pipeline.taps.append(lambda event: seen.append(event.ts_ns))
    batch: list[Event] = [shadow_read(11), shadow_read(13), shadow_read(14, cgroup_id=66),
                          CgroupEvent(type="cgroup_mkdir", ts_ns=1, cgroup_id=30, path="/x"),
                          shadow_read(15)]
    pipeline.on_batch(batch)
    assert seen == [11, 15]
    assert pipeline.failed == {"proctable": 1, "resolve": 1}
    await store.flush()
    found, _ = await store.query(FindingFilter(rules=("Read sensitive file untrusted",)))
    assert len(found) == 1  # 11 and 15 are repeats of one finding, suppressed into its count


async def test_failures_become_one_finding_per_stage_and_minute(
    pipeline: EventPipeline, store: FindingStore
) -> None:
    def broken_tap(event: Event) -> None:
        raise ValueError("tap broke")

    pipeline.taps.append(broken_tap)
    for _ in range(3):
        pipeline.on_batch([shadow_read(13), shadow_read(21)])
        for stage, failures in pipeline.take_failures().items():
            pipeline._detector.report_failures(stage, failures.count, failures.error,
                                               failures.container)
    pipeline._detector.flush_updates()
    await store.flush()
    found, _ = await store.query(FindingFilter(rules=(FAILURE_RULE,)))
    by_stage = {f.output_fields["stage"]: f for f in found}
    assert set(by_stage) == {"proctable", "tap"}
    assert by_stage["tap"].output_fields["evt.failed"] == 3
    assert by_stage["tap"].count == 3 and "ValueError: tap broke" in by_stage["tap"].output
    assert by_stage["proctable"].container.name == "web"
    assert pipeline.stats()["events_failed"]["tap"] == 3


async def test_load_names_the_container_that_sent_the_most(pipeline: EventPipeline) -> None:
    pipeline.on_batch([shadow_read(100 + i, cgroup_id=FLOOD.cgroup_id) for i in range(90)])
    pipeline.on_batch([shadow_read(200 + i) for i in range(10)])
    pipeline.load.tick()
    top = pipeline.load.top()
    assert [(load.container.name, load.events) for load in top] == [("flood", 90), ("web", 10)]
    assert top[0].share == pytest.approx(0.9)
