"""What the API reads from the rest of the daemon: small Protocol-typed views, one context."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web

from cauditd.config import ApiConfig
from cauditd.store import FindingStore


@dataclass(slots=True, kw_only=True)
class NetworkFilter:
    """Selection of flows and DNS records; None means any."""

    container: str | None = None
    since_ns: int | None = None
    peer: str | None = None  # a CIDR network ("10.0.0.5/32" for one address)
    port: int | None = None
    name: str | None = None  # a DNS name (suffix match is the provider's choice)
    limit: int = 100


class RulesView(Protocol):
    """The loaded rule set."""

    def rules_info(self) -> list[dict[str, Any]]:
        """Per rule: name, enabled, priority, tags, matches (count)."""
        ...

    async def reload(self) -> list[str]:
        """Reload the rule files; the errors of a refused set (empty: swapped in)."""
        ...


class ContainersView(Protocol):
    """Containers the daemon tracks."""

    def containers(self) -> list[dict[str, Any]]:
        """Per container: id (full), short_id, name, image, ... as the tracker describes it."""
        ...

    def container(self, id_or_name: str) -> dict[str, Any] | None:
        """One container by full id, short id or name."""
        ...


class StatsView(Protocol):
    """Daemon counters and readiness."""

    def stats(self) -> dict[str, Any]:
        """Events seen and lost per probe, findings per rule, uptime, ..."""
        ...

    def ready(self) -> bool:
        """True once the probes are attached."""
        ...


class AlertsView(Protocol):
    """The alert sinks."""

    def status(self) -> list[dict[str, Any]]:
        """Per sink: name, kind, queue depth, deliveries, last error, ..."""
        ...

    async def send_test(self, sink: str) -> dict[str, Any]:
        """Send a test message; KeyError when no such sink."""
        ...


class NetworkView(Protocol):
    """Flows and DNS answers the network probes saw."""

    def flows(self, filters: NetworkFilter) -> list[dict[str, Any]]:
        ...

    def dns(self, filters: NetworkFilter) -> list[dict[str, Any]]:
        ...


@dataclass(slots=True, kw_only=True)
class ApiContext:
    """Everything the API serves from; the daemon builds one, tests build one from fakes."""

    store: FindingStore
    rules: RulesView
    containers: ContainersView
    stats: StatsView
    alerts: AlertsView
    network: NetworkView
    config: ApiConfig = field(default_factory=ApiConfig)
    heartbeat_s: float = 15.0  # SSE comment line this often when idle


CONTEXT = web.AppKey("context", ApiContext)
