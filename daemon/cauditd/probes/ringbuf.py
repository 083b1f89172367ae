"""Drain a BCC ring buffer on a short timer in a thread and hand decoded batches to asyncio.

Probes submit with BPF_RB_NO_WAKEUP, so nothing signals epoll: the reader consumes on a timer
instead (see ENVIRONMENT.md: a wakeup per record cost the workload most), every `interval`
seconds while records flow, GATHER_FACTOR times that while they trickle, and backing off to
IDLE_INTERVAL_MAX while none do (PollInterval).

The hand-off to the loop is bounded (Handoff): while the loop still holds HANDOFF_EVENTS events
it has not processed, the reader stops draining, the ring buffer fills, and the kernel drops
and counts what no longer fits (the probes' lost counter, reported as a drop finding naming the
container that sent the most). A slow loop therefore costs events that are counted, never
memory that grows.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from cauditd.events import Event

log = logging.getLogger(__name__)

Decoder = Callable[[bytes], Event | None]
AnyDecoder = Callable[[bytes | memoryview], Event | None]  # fits both readers
BatchSink = Callable[[list[Event]], None]

PR_SET_NAME = 15
IDLE_INTERVAL_MAX = 0.02  # the longest wait between drains while nothing arrives
IDLE_GRACE = 0.1  # a quiet spell shorter than this keeps the base interval
GATHER_FACTOR = 4  # the wait after a drain that found only a few records, in base intervals
SPARSE_BATCH = 64  # ... fewer than this
HANDOFF_EVENTS = 8192  # events handed to the loop and not processed yet, at most (+1 batch)
HANDOFF_CHECK_S = 0.05  # how often a reader waiting for room looks at its stop flag
SLICE_EVENTS = 512  # events the loop processes in one turn before it serves other callbacks


def name_os_thread(name: str) -> None:
    """Give the calling thread `name` (15 bytes) as its kernel comm, so `top -H` and
    /proc/PID/task/*/comm tell the readers apart from the event loop."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_NAME, name.encode()[:15], 0, 0, 0)


class PollInterval:
    """The wait before a reader's next drain: none after a drain that found `sparse` records
    or more (the producer is busy), `gather` after one that found fewer, and after one that
    found none `base` for `grace` seconds, then doubling up to `ceiling`.

    Nothing can wake a reader (records are submitted with BPF_RB_NO_WAKEUP), so a fixed 2 ms
    timer cost an idle daemon ~500 wakeups/s, about 1% of a core. Backing off costs at most
    `ceiling` of extra latency on the first record after a quiet spell longer than `grace`;
    one drain that finds records brings the reader back. A trickle of records (a shell script's
    execs, a client's connections) drained every 2 ms cost a wakeup of the reader and of the
    event loop, and a batch's fixed costs, for every few records: gathering them for `gather`
    instead cut the daemon's CPU for bench/overhead.py's shell app by a third, for at most
    `gather` of extra latency (less than `ceiling`, which any quiet spell costs).
    """

    __slots__ = ("base", "ceiling", "current", "gather", "grace", "idle", "sparse")

    def __init__(
        self, base: float, ceiling: float = IDLE_INTERVAL_MAX, grace: float = IDLE_GRACE,
        gather: float | None = None, sparse: int = SPARSE_BATCH,
    ) -> None:
        self.base = base
        self.ceiling = max(base, ceiling)
        gather = base * GATHER_FACTOR if gather is None else gather
        self.gather = min(max(base, gather), self.ceiling)
        self.sparse = sparse
        self.grace = grace
        self.current = base
        self.idle = 0.0  # seconds waited since the last drain that found records

    def after(self, found: int) -> float:
        """Seconds to wait after a drain that read `found` records."""
        if found:
            self.current, self.idle = self.base, 0.0
            return 0.0 if found >= self.sparse else self.gather
        wait = self.current
        if self.idle >= self.grace:
            self.current = min(wait * 2, self.ceiling)
        self.idle += wait
        return wait


class Reader(Protocol):
    """What a probe needs from a ring buffer reader (this one, or mmap_ringbuf.MmapRingBuffer)."""

    decode_errors: int
    handoff: Handoff

    def set_decoder(self, decode: AnyDecoder) -> None:
        """Decode records with `decode` from the next batch on (any thread)."""
        ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


class Handoff:
    """Batches from a reader thread to the event loop, with at most `capacity` events handed
    over and not yet processed (one batch may overshoot it). The reader asks `full()` before
    it drains and `wait_for_room()` while it is full; the loop frees room as it processes.

    The loop takes at most SLICE_EVENTS events per turn (one callback at a time, rescheduled
    while events wait), so the API and timers are served between slices even during a storm.
    """

    def __init__(self, sink: BatchSink, name: str, capacity: int = HANDOFF_EVENTS) -> None:
        self._sink = sink
        self._name = name
        self.capacity = capacity
        self.pending = 0  # events handed over, not processed yet
        self.peak = 0
        self.stalls = 0  # times the reader found the loop behind and waited
        self.stalled_s = 0.0
        self.dropped = 0  # events that could not be handed over (loop closed at shutdown)
        self._batches: deque[list[Event]] = deque()
        self._scheduled = False
        self._lock = threading.Lock()
        self._room = threading.Event()
        self._room.set()
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def full(self) -> bool:
        return self.pending >= self.capacity

    def wait_for_room(self, stop: threading.Event) -> None:
        """Block the reader while the loop is behind (or until `stop` is set)."""
        if not self.full():
            return
        self.stalls += 1
        began = time.monotonic()
        while self.full() and not stop.is_set():
            self._room.wait(HANDOFF_CHECK_S)
        self.stalled_s += time.monotonic() - began

    def put(self, batch: list[Event]) -> None:
        """Hand `batch` to the loop (from the reader thread)."""
        if not batch:
            return
        assert self._loop is not None, "Handoff.bind() before put()"
        with self._lock:
            self._batches.append(batch)
            self.pending += len(batch)
            self.peak = max(self.peak, self.pending)
            if self.pending >= self.capacity:
                self._room.clear()
            schedule, self._scheduled = not self._scheduled, True
        if schedule:
            try:
                self._loop.call_soon_threadsafe(self._run)
            except RuntimeError:  # loop closed during shutdown
                self._drop_all()

    def _run(self) -> None:
        """On the loop: process up to SLICE_EVENTS events, then yield to other callbacks."""
        budget = SLICE_EVENTS
        while budget > 0:
            with self._lock:
                if not self._batches:
                    break
                batch = self._batches.popleft()
                if len(batch) > budget:
                    self._batches.appendleft(batch[budget:])
                    batch = batch[:budget]
            budget -= len(batch)
            try:
                self._sink(batch)
            except Exception:  # the pipeline isolates events; this is a last guard
                log.exception("%s: a batch of %d events failed", self._name, len(batch))
            finally:
                self._done(len(batch))
        with self._lock:
            self._scheduled = bool(self._batches)
        if self._scheduled:
            assert self._loop is not None
            self._loop.call_soon(self._run)

    def _done(self, count: int) -> None:
        with self._lock:
            self.pending -= count
            if self.pending < self.capacity:
                self._room.set()

    def _drop_all(self) -> None:
        with self._lock:
            dropped = sum(len(b) for b in self._batches)
            self._batches.clear()
            self._scheduled = False
        self._done(dropped)
        self.dropped += dropped
        log.warning("%s: %d events dropped at shutdown", self._name, dropped)

    def stats(self) -> dict[str, int | float]:
        return {
            "capacity": self.capacity, "pending": self.pending, "peak": self.peak,
            "stalls": self.stalls, "stalled_s": round(self.stalled_s, 3),
            "dropped": self.dropped,
        }


class DrainThread:
    """What both readers share: a thread calling `drain()` on the PollInterval timer (at once
    again while drains find records, never while the hand-off to the loop is full), a last
    drain at stop, and batches handed to the loop through a bounded Handoff."""

    def __init__(self, sink: BatchSink, interval: float, name: str) -> None:
        self.handoff = Handoff(sink, name)
        self._poll = PollInterval(interval)
        self._name = name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def drain(self) -> int:
        """Consume what the kernel holds, `_deliver` it; returns how many records were read."""
        raise NotImplementedError

    def start(self) -> None:
        self.handoff.bind(asyncio.get_running_loop())
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def _join(self) -> bool:
        """Stop the thread after its last drain; False if it did not stop in time."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            if self._thread.is_alive():
                log.error("%s: reader thread did not stop", self._name)
                return False
            self._thread = None
        return True

    def _run(self) -> None:
        name_os_thread(self._name)
        try:
            while not self._stop.is_set():
                self.handoff.wait_for_room(self._stop)
                wait = self._poll.after(self.drain())
                if wait:
                    self._stop.wait(wait)  # stop() wakes it at once
            self.drain()
        except Exception:
            log.exception("%s: reader stopped", self._name)

    def _may_drain(self) -> bool:
        """More batches may be read in this drain: the loop has room (or this is the last)."""
        return self._stop.is_set() or not self.handoff.full()

    def _deliver(self, batch: list[Event]) -> None:
        self.handoff.put(batch)


class RingBufferReader(DrainThread):
    """Reads one BPF ring buffer map with BCC's per-record callback; `sink` is called on the
    event loop with each batch."""

    def __init__(
        self,
        bpf: Any,
        map_name: str,
        decode: Decoder,
        sink: BatchSink,
        *,
        interval: float = 0.002,
        name: str = "ringbuf",
    ) -> None:
        super().__init__(sink, interval, name)
        self._bpf = bpf
        self._decode = decode
        self._records = 0
        self._batch: list[Event] = []
        self.decode_errors = 0
        bpf[map_name].open_ring_buffer(self._on_record)

    def set_decoder(self, decode: Decoder) -> None:
        self._decode = decode

    def _on_record(self, _ctx: Any, data: Any, size: int) -> int:
        self._records += 1
        raw = ctypes.string_at(data, size)
        try:
            event = self._decode(raw)
        except Exception:
            self.decode_errors += 1
            log.exception("%s: cannot decode a %d-byte record", self._name, size)
            return 0
        if event is not None:
            self._batch.append(event)
        return 0  # returning None costs 2.6x: BCC calls int(ret) in a try block

    def stop(self) -> None:
        """Stop the thread after a last drain (what the kernel still held is delivered)."""
        self._join()

    def drain(self) -> int:
        self._records = 0
        self._bpf.ring_buffer_consume()
        batch, self._batch = self._batch, []
        self._deliver(batch)
        return self._records
