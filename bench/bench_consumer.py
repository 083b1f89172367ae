"""Events/s the syscall consumer sustains, BCC's per-record callback against MmapRingBuffer.

Both readers run in the same invocation, each through SyscallProbes (ring buffer -> decode into
typed events -> a batch on the asyncio loop), with `bench_loop open SECONDS` in --network none
containers as the producer:

- capacity: the reader sleeps while the producer fills a 256 MiB ring buffer, then the time of
  the one drain that empties it (stop() wakes the reader) gives the events/s it can consume;
- transport: the same drain with a 64-byte record per getppid() and a decoder that returns
  None, i.e. what each reader costs by itself, without building events;
- live: the reader drains every 2 ms while the loop runs, with RINGBUF_PAGES pages: events/s
  delivered and kernel-side losses (a rate with 0 lost is a zero-loss rate).

Usage (root, dockerd, test image built):

    .venv/bin/python bench/bench_consumer.py [SECONDS] [RINGBUF_PAGES] [CONTAINERS]
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass

from cauditd.config import ProbesConfig
from cauditd.containers.registry import ContainerRegistry
from cauditd.events import Event
from cauditd.probes.mmap_ringbuf import open_reader
from cauditd.probes.syscall import SyscallProbes
from common import TEST_IMAGE

SETTLE_S = 2.0  # after the last drain, for the loop to take what it handed over
CAPACITY_PAGES = 65536  # 256 MiB: ~400k openat records, enough to time a drain
READERS = {"bcc": False, "mmap": True}
TRANSPORT_RECORDS = 1_000_000
TRANSPORT_PROGRAM = """
struct record { u64 seq; u64 ts; u32 pid; u32 tid; char comm[16]; u64 pad[2]; };
BPF_RINGBUF_OUTPUT(events, 32768);
BPF_ARRAY(target, u64, 1);
TRACEPOINT_PROBE(syscalls, sys_enter_getppid)
{
    int zero = 0;
    u64 *pid = target.lookup(&zero);
    if (!pid || (bpf_get_current_pid_tgid() >> 32) != *pid)
        return 0;
    struct record *rec = events.ringbuf_reserve(sizeof(*rec));
    if (!rec)
        return 0;
    rec->seq = bpf_ktime_get_ns();
    events.ringbuf_submit(rec, BPF_RB_NO_WAKEUP);
    return 0;
}
"""


@dataclass
class Run:
    """What one reader delivered in one run."""

    reader: str
    delivered: int = 0
    lost: int = 0
    seconds: float = 0.0
    last_batch: float = 0.0  # monotonic time the loop took the last batch

    @property
    def rate(self) -> float:
        return self.delivered / self.seconds if self.seconds else 0.0


async def workload(seconds: int, containers: int) -> None:
    command = ("docker", "run", "--rm", "--network", "none", TEST_IMAGE)
    procs = [
        await asyncio.create_subprocess_exec(
            *command, "bench_loop", "open", str(seconds), stdout=asyncio.subprocess.DEVNULL
        )
        for _ in range(containers)
    ]
    await asyncio.gather(*(proc.wait() for proc in procs))


async def traced(config: ProbesConfig, run: Run) -> SyscallProbes:
    def on_events(batch: list[Event]) -> None:
        run.delivered += len(batch)
        run.last_batch = time.monotonic()

    probes = SyscallProbes(config, on_events)
    probes.set_syscalls({"openat"})
    await probes.start()
    return probes


async def capacity(reader: str, containers: int) -> Run:
    """Fill a big ring buffer with nobody reading, then time the drain that empties it."""
    run = Run(reader)
    config = ProbesConfig(
        ringbuf_pages=CAPACITY_PAGES, poll_interval_ms=600_000, ringbuf_mmap=READERS[reader]
    )
    probes = await traced(config, run)
    registry = ContainerRegistry(config, [probes])
    await registry.start()
    await workload(3, containers)
    await asyncio.sleep(0.2)
    run.delivered, started = 0, time.monotonic()
    await probes.stop()  # wakes the reader for its last drain, in a thread
    await registry.stop()
    await asyncio.sleep(SETTLE_S)  # the loop takes the batches the drain handed over
    run.seconds, run.lost = run.last_batch - started, probes.lost_total
    return run


async def live(reader: str, seconds: int, pages: int, containers: int) -> Run:
    """Drain every 2 ms while the workload runs; events/s over the workload's time."""
    run = Run(reader)
    config = ProbesConfig(ringbuf_pages=pages, ringbuf_mmap=READERS[reader])
    probes = await traced(config, run)
    registry = ContainerRegistry(config, [probes])
    await registry.start()
    await workload(seconds, containers)
    await asyncio.sleep(0.2)
    await probes.stop()
    await registry.stop()
    run.seconds, run.lost = seconds, probes.lost_total
    return run


async def transport(reader: str) -> Run:
    """Fill a 128 MiB ring with 64-byte records, then time one drain with a no-op decoder."""
    import ctypes

    from bcc import BPF

    run = Run(reader)
    bpf = BPF(text=TRANSPORT_PROGRAM)
    loop = f"import os; [os.getppid() for _ in range({TRANSPORT_RECORDS})]"
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", f"import sys; sys.stdin.readline(); {loop}",
        stdin=asyncio.subprocess.PIPE,
    )  # fmt: skip
    bpf["target"][ctypes.c_int(0)] = ctypes.c_uint64(child.pid)
    assert child.stdin is not None
    child.stdin.write(b"go\n")
    await child.wait()

    def sink(batch: list[Event]) -> None:
        pass

    count = [0]

    def decode(raw: bytes | memoryview) -> Event | None:
        count[0] += 1
        return None

    ring = open_reader(bpf, "events", decode, sink, interval=600, direct=READERS[reader])
    started = time.monotonic()
    ring.start()
    await asyncio.to_thread(ring.stop)
    run.seconds, run.delivered = time.monotonic() - started, count[0]
    del ring
    bpf.cleanup()
    return run


def report(title: str, runs: dict[str, Run]) -> None:
    print(title)
    for run in runs.values():
        zero = "zero-loss" if run.lost == 0 else f"lost {run.lost:,}"
        print(f"  {run.reader:4}: {run.delivered:>9,} events in {run.seconds:6.3f}s = "
              f"{run.rate:>11,.0f} events/s ({zero})")  # fmt: skip
    bcc, direct = runs["bcc"].rate, runs["mmap"].rate
    print(f"  ratio mmap/bcc: {direct / bcc:.2f}x" if bcc else "  ratio: n/a")


async def main(seconds: int, pages: int, containers: int) -> None:
    moved = {name: await transport(name) for name in READERS}
    report("transport (drain of 1M 64-byte records, no-op decoder):", moved)
    caps = {name: await capacity(name, containers) for name in READERS}
    report(f"capacity (drain of a full {CAPACITY_PAGES}-page ring buffer):", caps)
    lives = {name: await live(name, seconds, pages, containers) for name in READERS}
    report(f"live ({containers} x bench_loop open {seconds}s, {pages} pages, 2 ms):", lives)


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]]
    asyncio.run(main(*(args + [3, 1024, 1][len(args) :])))
