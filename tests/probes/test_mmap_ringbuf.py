"""MmapRingBuffer against a real BPF ring buffer of 2 pages: every record once and in order
across hundreds of wraps, discarded records skipped, losses while no consumer runs."""

from __future__ import annotations

import asyncio
import ctypes
import os
import struct
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from cauditd.events import Event, SyscallEvent
from cauditd.probes.mmap_ringbuf import MmapRingBuffer, open_reader
from cauditd.probes.ringbuf import RingBufferReader

pytestmark = pytest.mark.usefixtures("ebpf")

# A record per getppid() of one thread: odd sequence numbers are big (1005 bytes, so records
# straddle the end of the 8 KiB data area), even ones small (12 bytes); neither is a multiple
# of 8, so every header is followed by padding. Every DISCARD_EVERY-th record is discarded.
PROGRAM = r"""
#define KIND_SMALL 1
#define KIND_BIG 2
struct small_record { u32 seq; u32 kind; u32 check; } __attribute__((packed));
struct big_record {
    u32 seq; u32 kind; u32 check; u8 fill[989]; u8 tail[4];
} __attribute__((packed));

BPF_RINGBUF_OUTPUT(events, 2);
/* [0] thread id traced, [1] discard every Nth (0: never), [2] ns a big record stays busy */
BPF_ARRAY(settings, u64, 3);
BPF_ARRAY(next_seq, u64, 1);
BPF_PERCPU_ARRAY(lost, u64, 1);

/* Spin between reserve and commit, so a concurrent consumer meets records still busy. */
static __always_inline void stay_busy(u64 ns)
{
    u64 until = bpf_ktime_get_ns() + ns;
    for (int i = 0; i < 2000 && ns; i++)
        if (bpf_ktime_get_ns() > until)
            break;
}

static __always_inline void count_lost(void)
{
    int zero = 0;
    u64 *n = lost.lookup(&zero);
    if (n)
        (*n)++;
}

TRACEPOINT_PROBE(syscalls, sys_enter_getppid)
{
    int zero = 0, one = 1, two = 2;
    u64 *tid = settings.lookup(&zero);
    u64 *every = settings.lookup(&one);
    u64 *busy_ns = settings.lookup(&two);
    u64 *next = next_seq.lookup(&zero);
    if (!tid || !every || !busy_ns || !next || (u32)bpf_get_current_pid_tgid() != *tid)
        return 0;
    u32 seq = *next;
    *next = seq + 1;
    bool discard = *every && seq % *every == 0;
    if (seq & 1) {
        struct big_record *rec = events.ringbuf_reserve(sizeof(*rec));
        if (!rec) {
            count_lost();
            return 0;
        }
        rec->seq = seq;
        rec->kind = KIND_BIG;
        stay_busy(*busy_ns);
        rec->check = ~seq;
        rec->tail[0] = seq;
        rec->tail[1] = seq >> 8;
        rec->tail[2] = seq >> 16;
        rec->tail[3] = seq >> 24;
        if (discard)
            events.ringbuf_discard(rec, BPF_RB_NO_WAKEUP);
        else
            events.ringbuf_submit(rec, BPF_RB_NO_WAKEUP);
    } else {
        struct small_record *rec = events.ringbuf_reserve(sizeof(*rec));
        if (!rec) {
            count_lost();
            return 0;
        }
        rec->seq = seq;
        rec->kind = KIND_SMALL;
        rec->check = ~seq;
        if (discard)
            events.ringbuf_discard(rec, BPF_RB_NO_WAKEUP);
        else
            events.ringbuf_submit(rec, BPF_RB_NO_WAKEUP);
    }
    return 0;
}
"""
SMALL_SIZE, BIG_SIZE = 12, 1005
HEAD = struct.Struct("<III")
RING_BYTES = 2 * 4096
CHUNK = 6  # 3 big + 3 small = 3120 bytes: always fits a drained 8 KiB ring


def decode_test_record(raw: bytes | memoryview) -> Event:
    """A test record as a SyscallEvent; raises if the bytes are not what the probe wrote."""
    seq, kind, check = HEAD.unpack_from(raw)
    assert check == seq ^ 0xFFFFFFFF, (seq, check)
    assert len(raw) == (BIG_SIZE if seq & 1 else SMALL_SIZE), (seq, len(raw))
    args: dict[str, int | str] = {"seq": seq, "kind": kind}
    if seq & 1:
        args["tail"] = struct.unpack_from("<I", raw, BIG_SIZE - 4)[0]
    return SyscallEvent(type="getppid", ts_ns=0, args=args)


class Harness:
    """The loaded program, what it emitted, lost and delivered, and a paced producer."""

    def __init__(self, bpf: Any) -> None:
        self.bpf = bpf
        self.seqs: list[int] = []
        self.tails: list[tuple[int, int]] = []
        bpf["settings"][ctypes.c_int(0)] = ctypes.c_uint64(threading.get_native_id())

    def discard_every(self, n: int) -> None:
        self.bpf["settings"][ctypes.c_int(1)] = ctypes.c_uint64(n)

    def sink(self, batch: list[Event]) -> None:
        for event in batch:
            assert isinstance(event, SyscallEvent)
            seq = int(event.args["seq"])
            self.seqs.append(seq)
            if "tail" in event.args:
                self.tails.append((seq, int(event.args["tail"])))

    @property
    def emitted(self) -> int:
        return int(self.bpf["next_seq"][ctypes.c_int(0)].value)

    @property
    def lost(self) -> int:
        return sum(int(v) for v in self.bpf["lost"].getvalue(ctypes.c_int(0)))

    def reader(self, interval: float = 0.0005) -> MmapRingBuffer:
        return MmapRingBuffer(self.bpf, "events", decode_test_record, self.sink, interval=interval)

    async def emit_paced(self, count: int, expected: int) -> None:
        """`count` records, CHUNK at a time, each chunk waited for until the sink saw
        `expected` + what this chunk should deliver (discarded ones never arrive)."""
        every = int(self.bpf["settings"][ctypes.c_int(1)].value)
        for start in range(0, count, CHUNK):
            first = self.emitted
            for _ in range(min(CHUNK, count - start)):
                os.getppid()
            expected += sum(1 for s in range(first, self.emitted) if not every or s % every)
            await self.wait_for(expected)

    async def wait_for(self, delivered: int) -> None:
        for _ in range(20000):  # a hang guard, not a timing assertion
            if len(self.seqs) >= delivered:
                return
            await asyncio.sleep(0.0005)
        raise AssertionError(f"{len(self.seqs)} of {delivered} records delivered")


@pytest.fixture
def bpf() -> Iterator[Any]:
    from bcc import BPF

    program = BPF(text=PROGRAM)
    yield program
    program.cleanup()


@pytest.fixture
async def harness(bpf: Any) -> AsyncIterator[Harness]:
    yield Harness(bpf)


async def test_every_record_arrives_once_in_order_across_many_wraps(harness: Harness) -> None:
    reader = harness.reader()
    reader.start()
    try:
        await harness.emit_paced(6000, expected=0)
    finally:
        reader.stop()
    assert harness.seqs == list(range(6000))
    assert harness.tails == [(s, s) for s in range(1, 6000, 2)]  # wrapped records read whole
    assert harness.lost == 0
    assert reader.records == 6000 and reader.discarded == 0 and reader.decode_errors == 0
    assert 6000 // 2 * (24 + 1016) // RING_BYTES > 300  # wraps of the data area


async def test_discarded_records_are_skipped(harness: Harness) -> None:
    harness.discard_every(5)
    reader = harness.reader()
    reader.start()
    try:
        await harness.emit_paced(3000, expected=0)
    finally:
        reader.stop()
    assert harness.seqs == [s for s in range(3000) if s % 5]
    assert reader.discarded == 600
    assert reader.records == 2400


async def test_losses_are_counted_while_the_consumer_is_stopped(harness: Harness) -> None:
    first = harness.reader()
    first.start()
    await harness.emit_paced(60, expected=0)
    first.stop()
    for _ in range(200):  # nobody consumes: the 8 KiB ring fills, reserves fail
        os.getppid()
    lost = harness.lost
    assert lost > 100
    second = harness.reader()  # the kernel kept the consumer position
    assert second.pending_bytes >= RING_BYTES - 24  # full: not even a small record fits
    second.start()
    try:
        await harness.wait_for(260 - lost)
        await harness.emit_paced(60, expected=260 - lost)  # and it recovers
    finally:
        second.stop()
    assert harness.seqs[:60] == list(range(60))
    kept = harness.seqs[60 : 260 - lost]
    assert kept == sorted(set(kept)) and kept[0] == 60 and kept[-1] < 260
    assert harness.seqs[260 - lost :] == list(range(260, 320))
    assert len(harness.seqs) + harness.lost == harness.emitted == 320


async def test_records_that_fail_to_decode_are_counted_and_skipped(harness: Harness) -> None:
    def strict(raw: memoryview) -> Event:
        if HEAD.unpack_from(raw)[0] == 3:
            raise ValueError("record 3 is broken")
        return decode_test_record(raw)

    reader = MmapRingBuffer(harness.bpf, "events", strict, harness.sink, interval=0.0005)
    reader.start()
    try:
        await harness.emit_paced(12, expected=-1)  # record 3 never arrives
    finally:
        reader.stop()
    assert harness.seqs == [s for s in range(12) if s != 3]
    assert reader.decode_errors == 1


async def test_a_map_that_is_not_a_ring_buffer_is_refused(harness: Harness) -> None:
    with pytest.raises(ValueError, match="not a BPF ring buffer"):
        MmapRingBuffer(harness.bpf, "next_seq", decode_test_record, harness.sink)


async def test_open_reader_chooses_bcc_when_asked(harness: Harness) -> None:
    bcc_reader = open_reader(harness.bpf, "events", decode_test_record, harness.sink, direct=False)
    assert isinstance(bcc_reader, RingBufferReader)
    bcc_reader.start()
    try:
        await harness.emit_paced(12, expected=0)
    finally:
        bcc_reader.stop()
    assert harness.seqs == list(range(12))


async def test_a_concurrent_producer_never_yields_torn_or_repeated_records(
    harness: Harness,
) -> None:
    """Another process floods while the reader drains, each big record busy for 50 us: busy
    records are left for the next drain, so every delivered record is whole, once, in order."""
    loop = "import os, sys; sys.stdin.readline(); [os.getppid() for _ in range(100_000)]"
    child = await asyncio.create_subprocess_exec(
        "python3", "-c", loop,
        stdin=asyncio.subprocess.PIPE,
    )  # fmt: skip
    harness.bpf["settings"][ctypes.c_int(0)] = ctypes.c_uint64(child.pid)
    harness.bpf["settings"][ctypes.c_int(2)] = ctypes.c_uint64(50_000)
    reader = harness.reader(interval=0.0002)
    reader.start()
    try:
        assert child.stdin is not None
        child.stdin.write(b"go\n")
        await child.stdin.drain()
        assert await child.wait() == 0
    finally:
        reader.stop()
    assert reader.decode_errors == 0  # a busy record read early fails decode_test_record
    assert harness.seqs == sorted(set(harness.seqs))
    assert harness.emitted >= 100_000  # python's start-up calls getppid a few times too
    assert len(harness.seqs) + harness.lost == harness.emitted
    assert all(seq == tail for seq, tail in harness.tails)
