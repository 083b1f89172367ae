"""Drain a BCC ring buffer on a short timer in a thread and hand decoded batches to asyncio.

Probes submit with BPF_RB_NO_WAKEUP, so nothing signals epoll: the reader consumes every
`interval` seconds instead (see ENVIRONMENT.md: a wakeup per record cost the workload most).
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol

from cauditd.events import Event

log = logging.getLogger(__name__)

Decoder = Callable[[bytes], Event | None]
BatchSink = Callable[[list[Event]], None]


class Reader(Protocol):
    """What a probe needs from a ring buffer reader (this one, or mmap_ringbuf.MmapRingBuffer)."""

    decode_errors: int

    def start(self) -> None: ...

    def stop(self) -> None: ...


class RingBufferReader:
    """Reads one BPF ring buffer map; `sink` is called on the event loop with each batch."""

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
        self._bpf = bpf
        self._decode = decode
        self._sink = sink
        self._interval = interval
        self._name = name
        self._batch: list[Event] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.decode_errors = 0
        bpf[map_name].open_ring_buffer(self._on_record)

    def _on_record(self, _ctx: Any, data: Any, size: int) -> int:
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

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread after a last drain (what the kernel still held is delivered)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        assert self._loop is not None
        while not self._stop.is_set():
            self._drain()
            self._stop.wait(self._interval)  # stop() wakes it at once
        self._drain()

    def _drain(self) -> None:
        self._bpf.ring_buffer_consume()
        if not self._batch:
            return
        batch, self._batch = self._batch, []
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(self._sink, batch)
        except RuntimeError:  # loop closed during shutdown
            log.warning("%s: %d events dropped at shutdown", self._name, len(batch))
