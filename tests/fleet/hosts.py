"""A host without probes for fleet tests and benchmarks: the daemon's store, alert outbox,
detector and fleet component, in-process, fed recorded findings (a replaying publisher).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from cauditd.alerts import AlertDispatcher
from cauditd.config import AlertsConfig, FleetConfig, RulesConfig, StoreConfig
from cauditd.detection import Detector, rule_paths
from cauditd.findings import Finding
from cauditd.fleet.node import Fleet
from cauditd.network.history import NetworkHistory
from cauditd.store import FindingStore


def fleet_config(urls: list[str], **overrides: Any) -> FleetConfig:
    """A fleet config for a test cluster: short retries, frequent heartbeats."""
    config = FleetConfig(servers=list(urls), retry_max_s=1.0, heartbeat_interval_s=1.0,
                         ack_timeout_s=2.0)
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


class SimHost:
    """Store + outbox + fleet publisher (+ rules, for rollout) named `hostname`."""

    def __init__(self, root: Path, hostname: str, config: FleetConfig,
                 rules: RulesConfig | None = None) -> None:
        self.hostname = hostname
        self.rules = rules or RulesConfig(default_rules=False, paths=[])
        self.store = FindingStore(root / "findings.db", StoreConfig(batch_ms=5))
        self.alerts = AlertDispatcher(AlertsConfig(), self.store, poll_interval_s=0.5)
        self.alerts.register(self.store)
        self.detector = Detector(self.rules, self.store, hostname=hostname)
        self.fleet = Fleet(config, hostname=hostname, state_dir=root,
                           local_rules=lambda: self.rules, rule_paths=rule_paths,
                           host_status=lambda: {"drops": {"syscall": 0, "network": 0}},
                           reload=self.detector.reload)
        self.fleet.register(self.alerts, self.store)
        self.history = NetworkHistory(self.store, max_rows=100_000, max_age_s=86400.0)

    async def start(self) -> SimHost:
        await self.store.start()
        await self.alerts.start()
        await self.fleet.start()
        return self

    async def stop(self) -> None:
        await self.fleet.stop()
        await self.alerts.stop()
        await self.store.stop()

    async def connected(self) -> None:
        """Wait until the fleet sink has checked its streams and publishes."""
        assert self.fleet.worker is not None
        await self.fleet.worker.connected.wait()

    def add(self, finding: Finding) -> Finding:
        finding.hostname = self.hostname
        return self.store.add(finding)

    @property
    def depth(self) -> int:
        assert self.fleet.worker is not None
        return self.fleet.worker.depth

    async def drained(self, timeout: float = 60.0) -> None:
        """Wait until the fleet sink's outbox is empty."""
        await self.store.flush()
        deadline = asyncio.get_running_loop().time() + timeout
        while self.depth:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{self.hostname}: {self.depth} findings still queued; "
                                     f"fleet: {self.fleet.status()}")
            await asyncio.sleep(0.1)
