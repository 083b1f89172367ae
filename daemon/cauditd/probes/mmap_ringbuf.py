"""Drain a BPF ring buffer by reading its pages directly (mmap on the map fd), a batch at a time.

About 4x BCC's per-record callback (ENVIRONMENT.md): no ctypes call per record, one copy and one
consumer-position store per batch. The layout is the kernel's ring buffer ABI
(kernel/bpf/ringbuf.c, read the same way as libbpf's src/ringbuf.c):

- offset 0 of the map fd: the consumer page, the only page user space may map writable; its
  first 8 bytes are `consumer_pos` (u64), which the consumer advances;
- offset PAGE_SIZE: the producer page (`producer_pos`, u64, at its start), then the data area
  mapped twice in a row, so a record that wraps past the end reads as one contiguous span;
- a record is an 8-byte header (u32 `len`, u32 page offset) and `len` bytes of data, padded
  to 8 bytes. Bit 31 of `len` (BPF_RINGBUF_BUSY_BIT): reserved, not committed yet, so stop
  there; bit 30 (BPF_RINGBUF_DISCARD_BIT): committed with bpf_ringbuf_discard, skip it. Both
  bits still count in the space the record takes. Positions only grow; `pos & (size - 1)` is
  the offset in the data area.

Memory ordering: libbpf reads `producer_pos` and each `len` with smp_load_acquire and writes
`consumer_pos` with smp_store_release. On x86-64 (TSO) ordinary loads are not reordered with
other loads and stores are not reordered with earlier loads, so plain aligned loads and stores
give exactly those semantics. The positions are read and written through native `Q`
memoryviews (one aligned 8-byte move, never torn) and `len` through a native `I` view; data is
copied only after its header was seen committed, and `consumer_pos` is stored only after the
copy. On weakly ordered CPUs (arm64) this would need real barriers, so the reader refuses to
run there and `open_reader` falls back to BCC.
"""

from __future__ import annotations

import logging
import mmap
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cauditd.events import Event
from cauditd.probes.ringbuf import AnyDecoder, BatchSink, DrainThread, Reader, RingBufferReader

log = logging.getLogger(__name__)

RecordDecoder = Callable[[memoryview], Event | None]

PAGE_SIZE = mmap.PAGESIZE
HEADER_SIZE = 8
BUSY_BIT = 1 << 31
DISCARD_BIT = 1 << 30
LEN_MASK = DISCARD_BIT - 1
BPF_MAP_TYPE_RINGBUF = 27
BATCH_RECORDS = 4096  # a few thousand per batch: far bigger lists trip the GC
TSO_MACHINES = frozenset(("x86_64", "amd64", "i386", "i686"))


class RingBufferCorrupt(RuntimeError):
    """A record header that cannot be right (its length runs past the producer position)."""


def ring_size(map_fd: int) -> int:
    """Data size in bytes of the ring buffer map behind `map_fd`, from the kernel's fdinfo.

    Raises ValueError if the fd is not a BPF ring buffer map."""
    fields: dict[str, str] = {}
    for line in Path(f"/proc/self/fdinfo/{map_fd}").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    map_type = fields.get("map_type")
    if map_type != str(BPF_MAP_TYPE_RINGBUF):
        raise ValueError(f"fd {map_fd} is not a BPF ring buffer (map_type {map_type})")
    size = int(fields["max_entries"])
    if size <= 0 or size & (size - 1) or size % PAGE_SIZE:
        raise ValueError(f"ring buffer size {size} is not a power-of-two number of pages")
    return size


class MmapRingBuffer(DrainThread):
    """Reads one BPF ring buffer map through mmap; `sink` is called on the event loop with
    each batch of decoded events. Same contract as RingBufferReader, including the drain
    timer (`interval` while records flow, backing off while none do: PollInterval).

    The maps are made in the constructor, so a host that refuses them fails there (OSError),
    before anything consumed. `records`, `discarded` and `decode_errors` count what was read.
    """

    def __init__(
        self,
        bpf: Any,
        map_name: str,
        decode: RecordDecoder,
        sink: BatchSink,
        *,
        interval: float = 0.002,
        name: str = "ringbuf",
    ) -> None:
        if platform.machine().lower() not in TSO_MACHINES:
            raise OSError(f"direct ring buffer reads need x86 ordering, not {platform.machine()}")
        map_fd = int(bpf[map_name].map_fd)
        super().__init__(sink, interval, name)
        self._size = ring_size(map_fd)
        self._mask = self._size - 1
        self._decode = decode
        self.records = 0
        self.discarded = 0
        self.decode_errors = 0
        self._map_pages(map_fd)

    def _map_pages(self, map_fd: int) -> None:
        self._consumer_map = mmap.mmap(
            map_fd, PAGE_SIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0
        )
        try:
            self._data_map = mmap.mmap(
                map_fd, PAGE_SIZE + 2 * self._size, mmap.MAP_SHARED, mmap.PROT_READ,
                offset=PAGE_SIZE,
            )  # fmt: skip
        except BaseException:
            self._consumer_map.close()
            raise
        pages = memoryview(self._data_map)
        self._views = [memoryview(self._consumer_map), pages]
        self._consumer_pos = self._views[0][:8].cast("Q")
        self._producer_pos = pages[:8].cast("Q")
        self._data = pages[PAGE_SIZE:]
        self._lens = self._data.cast("I")  # header `len` at index (pos & mask) >> 2
        self._views += [self._consumer_pos, self._producer_pos, self._data, self._lens]

    def set_decoder(self, decode: RecordDecoder) -> None:
        self._decode = decode

    def stop(self) -> None:
        """Stop the thread after a last drain (what the kernel still held is delivered), then
        unmap the pages (they stay mapped if the thread did not stop)."""
        if self._join():
            self.close()

    def close(self) -> None:
        """Unmap the pages (stop() does it); the reader cannot be started again."""
        for view in reversed(self._views):
            view.release()
        self._views = []
        self._data_map.close()
        self._consumer_map.close()

    @property
    def pending_bytes(self) -> int:
        """Bytes the producer reserved that the consumer has not released yet."""
        return int(self._producer_pos[0] - self._consumer_pos[0])

    def drain(self) -> int:
        """Read every record committed so far; returns how many were read (skipped ones too)."""
        consumer_pos = self._consumer_pos[0]
        producer_pos = self._producer_pos[0]  # acquire: a plain load on x86 (module docstring)
        read = 0
        while consumer_pos < producer_pos and self._may_drain():
            try:
                end, spans, skipped = self._scan(consumer_pos, producer_pos)
            except RingBufferCorrupt as exc:
                log.error("%s: %s; skipping to the producer position", self._name, exc)
                self._consumer_pos[0] = producer_pos
                return read
            if end == consumer_pos:
                break  # the oldest record is not committed yet
            start = consumer_pos & self._mask
            chunk = self._data[start : start + (end - consumer_pos)].tobytes()
            self._consumer_pos[0] = end  # release: the copy above is done
            consumer_pos = end
            read += len(spans) + skipped
            self.discarded += skipped
            self._deliver(self._decode_batch(chunk, spans))
        return read

    def _scan(self, begin: int, producer_pos: int) -> tuple[int, list[tuple[int, int]], int]:
        """Walk committed headers from `begin`: (end position, (offset, size) of each record
        relative to `begin`, discarded count). At most BATCH_RECORDS records."""
        lens, mask = self._lens, self._mask
        spans: list[tuple[int, int]] = []
        skipped = 0
        pos = begin
        while pos < producer_pos and len(spans) < BATCH_RECORDS:
            length = lens[(pos & mask) >> 2]
            if length & BUSY_BIT:
                break
            size = length & LEN_MASK
            if length & DISCARD_BIT:
                skipped += 1
            else:
                spans.append((pos - begin + HEADER_SIZE, size))
            pos += (size + HEADER_SIZE + 7) & ~7
        if pos > producer_pos:
            raise RingBufferCorrupt(f"record at {pos} runs past producer position {producer_pos}")
        return pos, spans, skipped

    def _decode_batch(self, chunk: bytes, spans: list[tuple[int, int]]) -> list[Event]:
        batch = getattr(self._decode, "decode_batch", None)  # the compiled decoder's
        if batch is not None:
            events: list[Event] = batch(chunk, spans, self._failed)
        else:
            view = memoryview(chunk)
            decode = self._decode
            events = []
            for offset, size in spans:
                try:
                    event = decode(view[offset : offset + size])
                except Exception as exc:
                    self._failed(size, exc)
                    continue
                if event is not None:
                    events.append(event)
        self.records += len(spans)
        return events

    def _failed(self, size: int, exc: Exception) -> None:
        self.decode_errors += 1
        log.error("%s: cannot decode a %d-byte record", self._name, size, exc_info=exc)


def open_reader(
    bpf: Any,
    map_name: str,
    decode: AnyDecoder,
    sink: BatchSink,
    *,
    interval: float = 0.002,
    name: str = "ringbuf",
    direct: bool = True,
) -> Reader:
    """The ring buffer reader for `map_name`: MmapRingBuffer when `direct` and the host maps
    the pages, else (with a warning saying why) BCC's RingBufferReader."""
    if direct:
        try:
            return MmapRingBuffer(bpf, map_name, decode, sink, interval=interval, name=name)
        except (OSError, ValueError) as exc:
            log.warning(
                "%s: cannot map the ring buffer's pages (%s); using BCC's reader", name, exc
            )
    return RingBufferReader(bpf, map_name, decode, sink, interval=interval, name=name)
