"""The event path, in one place: a batch of decoded events from the probes to findings.

Syscall events: resolve (cgroup id -> container) -> hold back (until the runtime's metadata,
at most 2 s) -> process table -> taps (--print-events, tests) -> rules -> store. Network
events arrive with their container and go straight to the taps and rules.

New findings reach the store as they are made; the grown counts of suppressed repeats once a
second (the daemon's housekeeping calls Detector.flush_updates) and at stop: a rule that fires
on every event of a loop costs the store one write a second, not one per batch.

Per-event isolation: an event that raises is skipped and counted by the stage it failed in
(`cauditd_events_failed_total{stage}`), logged at most every few seconds per stage, and
reported as a finding by the daemon's housekeeping; the rest of its batch goes on.
"""

from __future__ import annotations

import contextlib
import logging
import operator
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from cauditd.containers.cgroups import CgroupTree
from cauditd.containers.holdback import MetadataHoldBack
from cauditd.detection import Detector, Load
from cauditd.events import CgroupEvent, ContainerInfo, Event
from cauditd.proctable import ProcessTable

log = logging.getLogger(__name__)

STAGES = ("resolve", "holdback", "proctable", "tap", "match")
FAILURE_LOG_INTERVAL_S = 10.0
LOAD_TICKS = 40  # flood-watch ticks (a quarter second each) of load kept to name a flood's source
_CGROUP_ID = operator.attrgetter("cgroup_id")
_CONTAINER = operator.attrgetter("container")

Tap = Callable[[Event], None]


class Registry(Protocol):
    """What the pipeline needs of the container registry."""

    tree: CgroupTree
    on_metadata: list[Callable[[str], None]]

    def resolve(self, cgroup_id: int) -> ContainerInfo | None: ...

    def metadata_pending(self, container_id: str) -> bool: ...


@dataclass(slots=True)
class Failures:
    """Events that failed in one stage since the daemon last reported them."""

    count: int = 0
    error: str = ""
    container: ContainerInfo | None = None


class LoadMeter:
    """Events per container over the last LOAD_TICKS flood-watch ticks, so that drops can
    name the container that sent the most. Counting costs one C-level Counter update per batch.
    """

    def __init__(self, resolve: Callable[[int], ContainerInfo | None]) -> None:
        self._resolve = resolve
        self.cgroups: Counter[int] = Counter()
        self.containers: Counter[ContainerInfo] = Counter()
        self._ticks: deque[Counter[ContainerInfo]] = deque(maxlen=LOAD_TICKS)

    def tick(self) -> None:
        """Close the current tick (called four times a second by the daemon's flood watch)."""
        tick: Counter[ContainerInfo] = self.containers
        for cgroup_id, events in self.cgroups.items():
            container = self._resolve(cgroup_id)
            if container is not None:
                tick[container] += events
        self._ticks.append(tick)
        self.cgroups, self.containers = Counter(), Counter()

    def top(self, count: int = 3) -> list[Load]:
        """The containers that sent the most events in the last ticks, most first."""
        total: Counter[ContainerInfo] = Counter()
        for tick in self._ticks:
            total.update(tick)
        events = sum(total.values()) or 1
        return [Load(c, n, n / events) for c, n in total.most_common(count)]


class EventPipeline:
    """`on_batch(events)` for the syscall probes, `on_network_batch(events)` for the network
    monitor; both on the event loop. `taps` see every event that reaches the rules."""

    def __init__(self, registry: Registry, proctable: ProcessTable, detector: Detector) -> None:
        self._registry = registry
        self._proctable = proctable
        self._detector = detector
        self.holdback = MetadataHoldBack(registry, self._finish)
        self.taps: list[Tap] = []
        self.seen: Counter[tuple[str, str]] = Counter()  # events that reached the rules
        self.failed: Counter[str] = Counter()  # since start, by stage
        self.load = LoadMeter(registry.resolve)
        self._failures: dict[str, Failures] = {}
        self._logged_at: dict[str, float] = {}

    def on_batch(self, events: list[Event]) -> None:
        """A batch from the syscall probes, in kernel order."""
        with contextlib.suppress(AttributeError):  # not a syscall event: reported below
            self.load.cgroups.update(map(_CGROUP_ID, events))
        resolve, hold, finish = self._registry.resolve, self.holdback.hold, self._finish
        stage = "resolve"
        for event in events:
            try:
                stage = "resolve"
                if type(event) is CgroupEvent:
                    self._registry.tree.created(event.cgroup_id, event.path)
                    continue
                container = resolve(event.cgroup_id)  # type: ignore[attr-defined]
                if container is None:
                    continue
                event.container = container
                stage = "holdback"
                if not hold(event):
                    finish(event)
            except Exception as exc:
                self._failed(stage, event, exc)

    def on_network_batch(self, events: list[Event]) -> None:
        """Flows and DNS from the veth probes; they arrive with their container set."""
        self.load.containers.update(map(_CONTAINER, events))
        finish = self._match
        for event in events:
            finish(event)

    def _finish(self, event: Event) -> None:
        """Process table, then taps and rules, for an event that has its container."""
        try:
            self._proctable.apply(event)
        except Exception as exc:
            self._failed("proctable", event, exc)
            return
        self._match(event)

    def _match(self, event: Event) -> None:
        stage = "tap"
        try:
            self.seen[(event.source, event.type)] += 1
            for tap in self.taps:
                tap(event)
            stage = "match"
            self._detector.process(event)
        except Exception as exc:
            self._failed(stage, event, exc)

    def flush(self) -> None:
        """Deliver every held event now (at stop) and hand the store the repeat counts."""
        self.holdback.release_all()
        self._detector.flush_updates()

    # --- failures -------------------------------------------------------------------------

    def _failed(self, stage: str, event: Event, exc: Exception) -> None:
        self.failed[stage] += 1
        failures = self._failures.setdefault(stage, Failures())
        failures.count += 1
        failures.error = f"{type(exc).__name__}: {exc}"[:300]
        failures.container = getattr(event, "container", None)
        now = time.monotonic()
        if now - self._logged_at.get(stage, -FAILURE_LOG_INTERVAL_S) >= FAILURE_LOG_INTERVAL_S:
            self._logged_at[stage] = now
            log.error(
                "a %s event failed in the %s stage and was skipped (the rest of its batch goes "
                "on; further failures are counted, logged every %.0fs)",
                event.type, stage, FAILURE_LOG_INTERVAL_S, exc_info=exc,
            )

    def take_failures(self) -> dict[str, Failures]:
        """Failures by stage since the last call (the daemon reports them as findings)."""
        failures, self._failures = self._failures, {}
        return failures

    def stats(self) -> dict[str, Any]:
        return {
            "events_failed": {stage: self.failed[stage] for stage in STAGES},
            "held_for_metadata": self.holdback.held,
            "released_before_metadata": self.holdback.released_early,
        }
