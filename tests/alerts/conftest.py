"""Fixtures for the alert tests: the fake chat services, a real FindingStore, findings."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cauditd.alerts import AlertDispatcher
from cauditd.config import AlertsConfig, SinkConfig, StoreConfig
from cauditd.findings import ContainerRef, Finding, Priority, ProcessRef
from cauditd.store import FindingStore
from tests.alerts.services import ChatServices

FAST = {"retry_base_s": 0.02, "retry_max_s": 0.2, "timeout_s": 2.0}
_serial = itertools.count(1)


@pytest.fixture
async def services() -> AsyncIterator[ChatServices]:
    chat = ChatServices()
    await chat.start()
    yield chat
    await chat.stop()


def sink(name: str, kind: str, url: str = "", **options: Any) -> SinkConfig:
    """A sink config with fast retries and no rate limit unless told."""
    values: dict[str, Any] = {**FAST, "rate_limit": "", "min_priority": "debug", **options}
    return SinkConfig(name=name, kind=kind, url=url, **values)


def finding(
    rule: str = "Terminal shell in container",
    container: str = "web-1",
    priority: Priority = Priority.WARNING,
    output: str = "",
    **extra: Any,
) -> Finding:
    """A finding as the rule engine makes it (id set by the store)."""
    n = next(_serial)
    extra.setdefault("output_fields", {"proc.name": "sh", "container.name": container})
    return Finding(
        rule=rule,
        priority=priority,
        source="syscall",
        output=output or f"A shell was spawned in a container (user=root shell=sh n={n})",
        time_ns=time.time_ns(),
        tags=("container", "shell", "mitre_execution"),
        container=ContainerRef(id=f"{n:012x}", full_id=f"{n:064x}", name=container,
                               image="registry.local/web:1.2"),
        process=ProcessRef(pid=4242, exe="/bin/sh", cmdline="sh -i"),
        **extra,
    )  # fmt: skip


@dataclass
class Daemon:
    """A store and an alert dispatcher on one database, restartable like the daemon."""

    path: Path
    sinks: list[SinkConfig]
    poll_interval_s: float = 0.5
    store: FindingStore | None = None
    alerts: AlertDispatcher | None = None
    added: list[int] = field(default_factory=list)

    async def start(self) -> None:
        self.store = FindingStore(self.path, StoreConfig(batch_ms=10))
        self.alerts = AlertDispatcher(
            AlertsConfig(sinks=self.sinks), self.store, poll_interval_s=self.poll_interval_s
        )
        self.alerts.register(self.store)
        await self.store.start()
        await self.alerts.start()

    async def stop(self) -> None:
        if self.alerts is not None:
            await self.alerts.stop()
        if self.store is not None:
            await self.store.stop()
        self.alerts = self.store = None

    def add(self, *findings: Finding) -> list[Finding]:
        assert self.store is not None
        stored = [self.store.add(f) for f in findings]
        self.added.extend(f.id or 0 for f in stored)
        return stored

    def status(self, name: str) -> dict[str, Any]:
        assert self.alerts is not None
        return next(s for s in self.alerts.status() if s["name"] == name)


@pytest.fixture
async def daemon_factory(tmp_path: Path) -> AsyncIterator[Callable[..., Daemon]]:
    made: list[Daemon] = []

    def make(sinks: list[SinkConfig], **options: Any) -> Daemon:
        daemon = Daemon(tmp_path / "cauditd.db", sinks, **options)
        made.append(daemon)
        return daemon

    yield make
    for daemon in made:
        await daemon.stop()


async def eventually(condition: Callable[[], bool], what: str, limit_s: float = 30.0) -> None:
    """Wait until `condition()` holds; fail naming `what` if it never does (not a speed check)."""
    deadline = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.02)
