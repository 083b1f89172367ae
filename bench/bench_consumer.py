"""Events/s the syscall consumer (BCC ring buffer callback + decode into typed events) sustains.

Runs `bench_loop open SECONDS` in a --network none container and counts the events delivered
to the asyncio side and the kernel-side losses. Usage (root, dockerd, test image built):

    .venv/bin/python bench/bench_consumer.py [SECONDS] [RINGBUF_PAGES]
"""

from __future__ import annotations

import asyncio
import sys
import time

from cauditd.config import ProbesConfig
from cauditd.containers.registry import ContainerRegistry
from cauditd.events import Event
from cauditd.probes.syscall import SyscallProbes


async def main(seconds: int, pages: int) -> None:
    delivered = 0

    def on_events(batch: list[Event]) -> None:
        nonlocal delivered
        delivered += len(batch)

    config = ProbesConfig(ringbuf_pages=pages)
    probes = SyscallProbes(config, on_events)
    probes.set_syscalls({"openat"})
    await probes.start()
    registry = ContainerRegistry(config, [probes])
    await registry.start()
    start = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        "docker", "run", "--rm", "--network", "none", "cauditd-test:latest",
        "bench_loop", "open", str(seconds), stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await proc.communicate()
    await asyncio.sleep(0.2)
    elapsed = time.monotonic() - start
    await probes.stop()
    await registry.stop()
    print(f"workload: {out.decode().strip()}")
    print(
        f"delivered {delivered} events in {elapsed:.1f}s = {delivered / seconds:,.0f} events/s "
        f"over the loop's {seconds}s; lost {probes.lost_total}"
    )


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]]
    asyncio.run(main(*(args + [3, 1024][len(args) :])))
