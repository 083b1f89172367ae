"""Hold back a new container's events until its runtime metadata arrives (at most ~300 ms).

So the first exec of a container already carries container.name and container.image. Events of
one container keep their order; other containers' events are not delayed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from cauditd.events import Event


class MetadataSource(Protocol):
    """What the hold-back needs of the registry."""

    on_metadata: list[Callable[[str], None]]

    def metadata_pending(self, container_id: str) -> bool: ...


class MetadataHoldBack:
    """`submit(event)` delivers at once, or queues it while its container's metadata is pending."""

    def __init__(
        self, registry: MetadataSource, deliver: Callable[[Event], None], max_wait: float = 0.3
    ) -> None:
        self._registry = registry
        self._deliver = deliver
        self.max_wait = max_wait
        self._held: dict[str, list[Event]] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        registry.on_metadata.append(self.release)

    @property
    def held(self) -> int:
        return sum(len(q) for q in self._held.values())

    def submit(self, event: Event) -> None:
        container_id = event.container.id
        queue = self._held.get(container_id)
        if queue is not None:
            queue.append(event)
        elif self._registry.metadata_pending(container_id):
            self._held[container_id] = [event]
            loop = asyncio.get_running_loop()
            self._timers[container_id] = loop.call_later(self.max_wait, self.release, container_id)
        else:
            self._deliver(event)

    def release(self, container_id: str) -> None:
        """Deliver what was held for this container (metadata arrived, or the wait ran out)."""
        timer = self._timers.pop(container_id, None)
        if timer is not None:
            timer.cancel()
        for event in self._held.pop(container_id, ()):
            self._deliver(event)

    def release_all(self) -> None:
        for container_id in list(self._held):
            self.release(container_id)
