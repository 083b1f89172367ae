"""The bounded hand-off from a ring buffer reader to the loop: while the loop is busy the reader
stops draining, the kernel drops and counts what no longer fits, and what the reader holds for
the loop stays bounded. Every record is either delivered or counted as lost."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator

import pytest

from tests.probes.test_mmap_ringbuf import PROGRAM, RING_BYTES, Harness

ONE_BATCH = RING_BYTES // 24  # at most what the ring holds: its smallest records are 24 bytes

pytestmark = pytest.mark.usefixtures("ebpf")


@pytest.fixture
def harness() -> Iterator[Harness]:
    from bcc import BPF

    program = BPF(text=PROGRAM)
    yield Harness(program)
    program.cleanup()


async def test_a_blocked_loop_costs_counted_drops_never_memory(harness: Harness) -> None:
    reader = harness.reader(interval=0.0005)
    reader.handoff.capacity = 8
    reader.start()
    try:
        for _ in range(400):  # the loop never runs meanwhile: nothing handed over is processed
            for _ in range(5):
                os.getppid()
            time.sleep(0.0005)  # noqa: ASYNC251 (the loop must not run: the reader drains)
        assert reader.handoff.pending <= 8 + ONE_BATCH
        assert harness.lost > 0
        await asyncio.sleep(0.05)  # the loop runs: held batches are processed, the reader goes on
        await harness.wait_for(harness.emitted - harness.lost)
    finally:
        reader.stop()
    stats = reader.handoff.stats()
    assert len(harness.seqs) + harness.lost == harness.emitted == 2000
    assert harness.seqs == sorted(harness.seqs)
    assert stats["stalls"] >= 1 and stats["pending"] == 0 and stats["dropped"] == 0
    assert int(stats["peak"]) <= 8 + ONE_BATCH
