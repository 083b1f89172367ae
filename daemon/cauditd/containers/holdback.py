"""Hold back a new container's events until its runtime metadata arrives (at most 2 s).

So the first exec of a container already carries container.name, container.image and what the
container rules need of the runtime (mounts, privileged, its first process's pid). The engine
usually answers in tens of milliseconds; a busy one (a loaded host, many containers starting at
once) can take a second, and an event let go without the metadata may miss a rule (a sensitive
mount) or meet one its exception would have excused (the entrypoint's own reads at start). Events of
one container keep their order; other containers' events are not delayed. What one container
may have held is bounded: past `max_held` its events go on at once, without the metadata.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from cauditd.events import Event

MAX_HELD = 2_048  # events held per container; a burst beyond it is released (a bounded stall)


class MetadataSource(Protocol):
    """What the hold-back needs of the registry."""

    on_metadata: list[Callable[[str], None]]

    def metadata_pending(self, container_id: str) -> bool: ...


class MetadataHoldBack:
    """`hold(event)` queues an event while its container's metadata is pending; `release`
    hands what was held, in order, to `deliver` (metadata arrived, the wait ran out, or the
    container's queue reached `max_held`)."""

    def __init__(
        self,
        registry: MetadataSource,
        deliver: Callable[[Event], None],
        max_wait: float = 2.0,
        max_held: int = MAX_HELD,
    ) -> None:
        self._registry = registry
        self._deliver = deliver
        self.max_wait = max_wait
        self.max_held = max_held
        self.released_early = 0  # containers whose queue filled before the metadata came
        self._held: dict[str, list[Event]] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        registry.on_metadata.append(self.release)

    @property
    def held(self) -> int:
        return sum(len(q) for q in self._held.values())

    def hold(self, event: Event) -> bool:
        """True when the event was queued (it is delivered later); False: deliver it now."""
        container_id = event.container.id
        queue = self._held.get(container_id)
        if queue is not None:
            queue.append(event)
            if len(queue) >= self.max_held:
                self.released_early += 1
                self.release(container_id)
            return True
        if not self._registry.metadata_pending(container_id):
            return False
        self._held[container_id] = [event]
        loop = asyncio.get_running_loop()
        self._timers[container_id] = loop.call_later(self.max_wait, self.release, container_id)
        return True

    def release(self, container_id: str) -> None:
        """Deliver what was held for this container."""
        timer = self._timers.pop(container_id, None)
        if timer is not None:
            timer.cancel()
        for event in self._held.pop(container_id, ()):
            self._deliver(event)

    def release_all(self) -> None:
        for container_id in list(self._held):
            self.release(container_id)
