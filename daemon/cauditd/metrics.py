"""Prometheus metrics of the daemon, in one registry that `/metrics` serves.

Every metric is declared here so the names stay consistent; components import the objects.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.process_collector import ProcessCollector

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)

EVENTS = Counter(
    "cauditd_events", "Events decoded from the probes.", ["probe", "type"], registry=REGISTRY
)
EVENTS_FAILED = Counter(
    "cauditd_events_failed",
    "Events that raised on their way to the rules and were skipped (the rest of their batch "
    "went on), by pipeline stage: resolve, holdback, proctable, tap, match.",
    ["stage"],
    registry=REGISTRY,
)
UNDECODABLE = Counter(
    "cauditd_undecodable_strings",
    "Strings from the kernel or /proc that were not UTF-8 (kept with their bytes as escapes), "
    "by where they came from: record (probe records), comm, argv, cgroup.",
    ["field"],
    registry=REGISTRY,
)
EVENTS_LOST = Counter(
    "cauditd_events_lost",
    "Events the kernel could not hand over (ring buffer full), per probe.",
    ["probe"],
    registry=REGISTRY,
)
SYSCALLS_FILTERED = Counter(
    "cauditd_syscalls_filtered",
    "Syscalls the kernel's filters dropped because no loaded rule could match them, by "
    'filter ("open": opens by path and mode, "connect": connects and sendtos by destination, '
    '"dup": dups onto fds 0-2 of fds that are not sockets, "socket": new sockets by address '
    'family and fd, "accept": accepts of processes whose stdio is not piped).',
    ["filter"],
    registry=REGISTRY,
)
FINDINGS = Counter(
    "cauditd_findings",
    "Findings produced, by rule and priority (suppressed repeats not counted).",
    ["rule", "priority"],
    registry=REGISTRY,
)
RULE_ERRORS = Counter(
    "cauditd_rule_errors", "Rule evaluations that raised, by rule.", ["rule"], registry=REGISTRY
)
API_REQUESTS = Counter(
    "cauditd_api_requests",
    "HTTP API requests, by route and status.",
    ["route", "method", "status"],
    registry=REGISTRY,
)
API_REFUSED = Counter(
    "cauditd_api_refused",
    'API clients turned away by a limit ("connections", "streams"; 503 with Retry-After).',
    ["limit"],
    registry=REGISTRY,
)
ALERT_DELIVERIES = Counter(
    "cauditd_alert_deliveries",
    "Alert deliveries by sink and outcome (ok, retry, failed).",
    ["sink", "outcome"],
    registry=REGISTRY,
)
ALERT_RETRIES = Counter(
    "cauditd_alert_retries",
    "Alert delivery attempts that will be retried, by sink and reason (status or error).",
    ["sink", "reason"],
    registry=REGISTRY,
)
ALERT_DROPPED = Counter(
    "cauditd_alert_dropped",
    "Findings that left a sink's queue unsent because it was over its max_queue (the oldest "
    "below Critical first; they stay in the findings store), per sink.",
    ["sink"],
    registry=REGISTRY,
)
ALERT_QUEUE = Gauge(
    "cauditd_alert_queue_depth",
    "Findings waiting in the outbox, per sink.",
    ["sink"],
    registry=REGISTRY,
)
TRACKED_CONTAINERS = Gauge(
    "cauditd_tracked_containers", "Containers whose cgroups the probes watch.", registry=REGISTRY
)
PROBES_ATTACHED = Gauge(
    "cauditd_probes_attached",
    "1 when the probe is loaded and attached.",
    ["probe"],
    registry=REGISTRY,
)
DETECTION_LATENCY = Histogram(
    "cauditd_detection_latency_seconds",
    "From the kernel timestamp of an event to its finding being accepted by the store.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
    registry=REGISTRY,
)


class CounterSync:
    """Moves the growth of a plain counter (a dict kept on the per-event path) into a
    Prometheus counter; called from housekeeping, never per event."""

    def __init__(self, metric: Counter) -> None:
        self.metric = metric
        self._done: dict[Any, int] = {}

    def sync(self, counts: Mapping[Any, int]) -> None:
        for key, total in list(counts.items()):
            delta = total - self._done.get(key, 0)
            if delta > 0:
                labels = key if isinstance(key, tuple) else (key,)
                self.metric.labels(*labels).inc(delta)
                self._done[key] = total
