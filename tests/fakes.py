"""Shared test doubles: in-memory views of the daemon for the API, and a Finding factory."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from cauditd.findings import ContainerRef, Finding, Priority, ProcessRef

# -- findings ----------------------------------------------------------------------------------

FULL_ID_A = "a1" * 32
FULL_ID_B = "b2" * 32


def make_finding(
    rule: str = "Terminal shell in container",
    *,
    priority: Priority = Priority.WARNING,
    source: str = "syscall",
    tags: tuple[str, ...] = ("container", "shell"),
    full_id: str = FULL_ID_A,
    name: str = "web",
    time_ns: int | None = None,
    output: str = "",
) -> Finding:
    """A Falco-shaped finding about container `full_id` (or "host")."""
    container = ContainerRef(
        id=full_id if full_id == "host" else full_id[:12], full_id=full_id, name=name,
        image="nginx:1.25", pod="", namespace="",
    )
    return Finding(
        rule=rule, priority=priority, source=source, tags=tags, container=container,
        time_ns=time.time_ns() if time_ns is None else time_ns,
        output=output or f"{rule} (container={name})",
        output_fields={"proc.name": "sh", "container.id": container.id},
        process=ProcessRef(pid=42, exe="/bin/sh", cmdline="sh -i",
                           parents=[{"pid": 1, "exe": "/usr/sbin/nginx"}]),
    )


# -- views the API reads (cauditd.api.context protocols) ---------------------------------------


@dataclass
class FakeRules:
    """RulesView: a fixed list of rules; `reload` returns `reload_errors`."""

    rules: list[dict[str, Any]] = field(default_factory=lambda: [
        {"name": "Terminal shell in container", "enabled": True, "priority": "Warning",
         "tags": ["container", "shell"], "matches": 3},
    ])
    reload_errors: list[str] = field(default_factory=list)
    reloads: int = 0

    def rules_info(self) -> list[dict[str, Any]]:
        return self.rules

    async def reload(self) -> list[str]:
        self.reloads += 1
        return list(self.reload_errors)


@dataclass
class FakeContainers:
    """ContainersView over a list of container dicts (keys id, short_id, name, image)."""

    items: list[dict[str, Any]] = field(default_factory=lambda: [
        {"id": FULL_ID_A, "short_id": FULL_ID_A[:12], "name": "web", "image": "nginx:1.25"},
        {"id": FULL_ID_B, "short_id": FULL_ID_B[:12], "name": "db", "image": "postgres:16"},
    ])

    def containers(self) -> list[dict[str, Any]]:
        return self.items

    def container(self, id_or_name: str) -> dict[str, Any] | None:
        for item in self.items:
            if id_or_name in (item["id"], item["short_id"], item["name"]):
                return item
        return None


@dataclass
class FakeStats:
    """StatsView: counters and a settable readiness."""

    is_ready: bool = True

    def stats(self) -> dict[str, Any]:
        return {"uptime_s": 12.5, "probes": {"syscalls": {"events": 100, "lost": 0}},
                "findings_by_rule": {"Terminal shell in container": 3}}

    def ready(self) -> bool:
        return self.is_ready


@dataclass
class FakeAlerts:
    """AlertsView: sinks by name; `send_test` records what it was asked to send."""

    sinks: list[str] = field(default_factory=lambda: ["ops-slack"])
    tested: list[str] = field(default_factory=list)

    def status(self) -> list[dict[str, Any]]:
        return [{"name": s, "kind": "slack", "queue": 0, "delivered": 0, "last_error": None}
                for s in self.sinks]

    async def send_test(self, sink: str) -> dict[str, Any]:
        if sink not in self.sinks:
            raise KeyError(sink)
        self.tested.append(sink)
        return {"sink": sink, "outcome": "ok"}


@dataclass
class FakeNetwork:
    """NetworkView: records each filter it is asked with, returns fixed flows and DNS answers."""

    asked: list[Any] = field(default_factory=list)

    def flows(self, filters: Any) -> list[dict[str, Any]]:
        self.asked.append(filters)
        return [{"container": FULL_ID_A[:12], "peer": "10.0.0.5", "port": 443, "proto": "tcp",
                 "bytes_out": 1200, "bytes_in": 5400}]

    def dns(self, filters: Any) -> list[dict[str, Any]]:
        self.asked.append(filters)
        return [{"container": FULL_ID_A[:12], "name": "example.test", "answers": ["10.0.0.5"]}]
