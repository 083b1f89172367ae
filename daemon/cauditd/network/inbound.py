"""net.port_first_seen without /proc reads on the event loop: the reads of containers' sockets
(learning samples, and inbound flows the kernel had not seen answered) run in a worker thread,
at most one per container per READ_INTERVAL_S, so a neighbour's SYN flood at a container's
closed ports costs one read a second, not one per flow. A flow waiting for a read is held back
(at most MAX_HELD per container) and delivered once judged; beyond that, it is delivered at once
without the read (counted: inbound_checks_skipped).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from cauditd.events import Event, FlowEvent
from cauditd.network import listen
from cauditd.network.listen import ListenPorts, SocketPorts
from cauditd.tasks import create_task

log = logging.getLogger(__name__)

READ_INTERVAL_S = 1.0  # the most often one container's sockets are read
MAX_HELD = 64  # inbound flows per container waiting for a read
NO_PORTS = SocketPorts({"tcp": set(), "udp": set()}, {"tcp": set(), "udp": set()})
EventSink = Callable[[list[Event]], None]


@dataclass(slots=True)
class _Held:
    event: FlowEvent
    answered: Callable[[], bool]  # asked again after the read: the answer may be in by then


class InboundPorts:
    """Judges inbound flow_new events for net.port_first_seen (on the loop); the held ones go
    to `deliver` (which must not raise) once judged. `start` runs the reading worker; `stop`
    releases what waits."""

    def __init__(self, ports: ListenPorts, deliver: EventSink, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._ports = ports
        self._deliver = deliver
        self._clock = clock
        self._held: dict[str, list[_Held]] = {}
        self._due: dict[str, float] = {}  # container id -> the earliest its read may run
        self._last_read: dict[str, float] = {}
        self._sampling: set[str] = set()  # containers whose learning sample waits for the read
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.counters = dict.fromkeys(
            ("new_inbound_ports", "inbound_port_reads", "inbound_checks_skipped"), 0)

    def start(self) -> None:
        self._task = create_task(self._run(), name="net-inbound-ports")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        for container_id in list(self._held):
            self._release(container_id)

    def track(self, container_id: str, pid: int) -> None:
        self._ports.track(container_id, pid)
        self.sample_due()

    def forget(self, container_id: str) -> None:
        self._ports.forget(container_id)
        self._release(container_id)
        self._due.pop(container_id, None)
        self._last_read.pop(container_id, None)
        self._sampling.discard(container_id)

    def sample_due(self) -> None:
        """Schedule the learning samples that are due (call at every registry poll)."""
        for container_id, _pid in self._ports.due_samples():
            self._sampling.add(container_id)
            self._schedule(container_id)

    def judge(self, event: FlowEvent, answered: Callable[[], bool]) -> bool:
        """Set `event.port_first_seen` now, or hold the event until the container's sockets
        are read: True when held (it reaches `deliver` later, in a batch of its own)."""
        container_id = event.container.id
        verdict = self._ports.judge(container_id, event.l4proto, event.dport, answered())
        if verdict is not None:
            self._mark(event, verdict)
            return False
        held = self._held.setdefault(container_id, [])
        if len(held) >= MAX_HELD:
            self.counters["inbound_checks_skipped"] += 1
            return False
        held.append(_Held(event, answered))
        self._schedule(container_id)
        return True

    @property
    def held(self) -> int:
        return sum(len(h) for h in self._held.values())

    def _mark(self, event: FlowEvent, first_seen: bool) -> None:
        if first_seen:
            event.port_first_seen = True
            self.counters["new_inbound_ports"] += 1

    def _schedule(self, container_id: str) -> None:
        if container_id not in self._due:
            last = self._last_read.get(container_id)
            earliest = self._clock() if last is None else last + READ_INTERVAL_S
            self._due[container_id] = earliest
            self._wake.set()

    async def _run(self) -> None:
        while True:
            if not self._due:
                self._wake.clear()
                await self._wake.wait()
                continue
            container_id, earliest = min(self._due.items(), key=lambda item: item[1])
            delay = earliest - self._clock()
            if delay > 0:  # wait for it, or for a sooner one
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._wake.wait()
                continue
            del self._due[container_id]
            await self._read(container_id)

    async def _read(self, container_id: str) -> None:
        pid = self._ports.pid(container_id)
        if not pid:
            self._release(container_id)
            return
        self._last_read[container_id] = self._clock()
        self.counters["inbound_port_reads"] += 1
        # a learning sample needs the listening ports alone, cheap to ask for; a held flow
        # also the ports of any socket (the whole /proc table)
        read = listen.read_ports if self._held.get(container_id) else listen.read_listening
        try:
            ports = await asyncio.to_thread(read, pid)
        except Exception:
            log.exception("network: reading the sockets of pid %d failed", pid)
            ports = NO_PORTS
        if container_id in self._sampling:
            self._sampling.discard(container_id)
            self._ports.add_sample(container_id, pid, ports)
        judged: list[Event] = []
        for held in self._held.pop(container_id, []):
            event = held.event
            verdict = self._ports.judge(container_id, event.l4proto, event.dport, held.answered())
            if verdict is None:
                verdict = self._ports.judge_held(container_id, event.l4proto, event.dport, ports)
            self._mark(event, verdict)
            judged.append(event)
        self._send(judged)

    def _release(self, container_id: str) -> None:
        """Deliver a container's held flows unjudged (it went, or the daemon stops)."""
        events: list[Event] = [held.event for held in self._held.pop(container_id, [])]
        self._send(events)

    def _send(self, events: list[Event]) -> None:
        if events:
            self._deliver(events)  # the monitor's delivery, which logs a failing sink
