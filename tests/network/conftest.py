"""Fixtures of the network tests: a NetworkMonitor on its own event loop in a thread, and a
network namespace with a veth pair of our own (no traffic leaves it)."""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from cauditd.config import NetworkConfig
from cauditd.events import ContainerInfo, Event

T = TypeVar("T")


@dataclass
class StaticRegistry:
    """The part of ContainerRegistry the monitor reads: a list the test edits."""

    items: list[ContainerInfo] = field(default_factory=list)

    def containers(self) -> list[ContainerInfo]:
        return list(self.items)


class MonitorThread:
    """A NetworkMonitor (and optionally a registry with start/stop) on a loop in a thread."""

    def __init__(self, config: NetworkConfig, registry: Any) -> None:
        from cauditd.network.monitor import NetworkMonitor

        self.events: list[Event] = []
        self.registry = registry
        self.monitor = NetworkMonitor(config, registry, self.events.extend, poll_interval_s=0.2)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread_name = self._thread.name
        self.running = False

    def run(self, coro: Any, timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=timeout)

    def call(self, fn: Callable[[], T]) -> T:
        async def run() -> T:
            return fn()

        return self.run(run(), 30)  # type: ignore[no-any-return]

    def start(self) -> None:
        self._thread.start()
        if hasattr(self.registry, "start"):
            self.run(self.registry.start())
        self.run(self.monitor.start())
        self.running = True

    def stop(self) -> None:
        if self.running:
            self.running = False
            self.run(self.monitor.stop())
            if hasattr(self.registry, "stop"):
                self.run(self.registry.stop())
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
        self.loop.close()

    def wait_until(self, check: Callable[[], T], what: str, timeout: float = 20) -> T:
        """Poll `check` on the loop until it returns something truthy (bounded)."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.call(check)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.1)


@dataclass
class OwnVeth:
    """A netns with a veth pair: host end `host_name`/`ifindex`, a process `pid` inside."""

    netns: str
    host_name: str
    ifindex: int
    pid: int


@pytest.fixture
def own_veth() -> Iterator[OwnVeth]:
    tag = uuid.uuid4().hex[:6]
    netns, host = f"cauditd-t-ns-{tag}", f"cdt-{tag}"  # IFNAMSIZ: 15 characters
    sh = lambda *a: subprocess.run(a, check=True, capture_output=True)  # noqa: E731
    sh("ip", "netns", "add", netns)
    proc = None
    try:
        sh("ip", "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", netns)
        sh("ip", "link", "set", host, "up")
        proc = subprocess.Popen(["ip", "netns", "exec", netns, "sleep", "300"])
        ifindex = int(Path(f"/sys/class/net/{host}/ifindex").read_text())
        time.sleep(0.2)  # let `ip netns exec` become sleep
        yield OwnVeth(netns, host, ifindex, proc.pid)
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
        subprocess.run(["ip", "link", "del", host], capture_output=True)
        subprocess.run(["ip", "netns", "del", netns], capture_output=True)
