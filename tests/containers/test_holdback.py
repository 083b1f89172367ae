"""The metadata hold-back: a pending container's events wait (in order), others pass."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from cauditd.containers.holdback import MetadataHoldBack
from cauditd.events import ContainerInfo, ExecEvent


class Registry:
    def __init__(self) -> None:
        self.pending: set[str] = set()
        self.on_metadata: list[Callable[[str], None]] = []

    def metadata_pending(self, container_id: str) -> bool:
        return container_id in self.pending


def event(container: ContainerInfo, pid: int) -> ExecEvent:
    return ExecEvent(type="execve", ts_ns=pid, container=container, pid=pid)


def submit(hold: MetadataHoldBack, out: list[ExecEvent], item: ExecEvent) -> None:
    """What the pipeline does: hold the event, or deliver it at once."""
    if not hold.hold(item):
        out.append(item)


async def test_pending_container_waits_until_metadata_arrives() -> None:
    registry, out = Registry(), []
    hold = MetadataHoldBack(registry, out.append, max_wait=10)
    new, known = ContainerInfo(id="new"), ContainerInfo(id="known")
    registry.pending.add("new")
    submit(hold, out, event(new, 1))
    submit(hold, out, event(known, 2))
    submit(hold, out, event(new, 3))
    assert [e.ts_ns for e in out] == [2]
    registry.pending.clear()
    new.name = "web"
    for callback in registry.on_metadata:
        callback("new")
    assert [e.ts_ns for e in out] == [2, 1, 3]
    assert all(e.container.name == "web" for e in out if e.container is new)


async def test_held_events_go_out_when_the_wait_runs_out() -> None:
    registry, out = Registry(), []
    hold = MetadataHoldBack(registry, out.append, max_wait=0.01)
    registry.pending.add("slow")
    submit(hold, out, event(ContainerInfo(id="slow"), 1))
    assert out == [] and hold.held == 1
    await asyncio.sleep(0.05)
    assert [e.ts_ns for e in out] == [1] and hold.held == 0


async def test_a_burst_past_the_cap_is_released_in_order_without_waiting() -> None:
    registry, out = Registry(), []
    hold = MetadataHoldBack(registry, out.append, max_wait=10, max_held=100)
    flood = ContainerInfo(id="flood")
    registry.pending.add("flood")
    for pid in range(250):
        submit(hold, out, event(flood, pid))
    assert [e.ts_ns for e in out] == list(range(200)) and hold.held == 50
    assert hold.released_early == 2
