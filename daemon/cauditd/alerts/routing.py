"""Which findings a sink wants: minimum priority and optional rule, tag and container filters."""

from __future__ import annotations

from cauditd.config import SinkConfig
from cauditd.findings import Finding, Priority


class Route:
    """A sink's filters, parsed once; `wants` runs on the store's writer thread per finding."""

    def __init__(self, config: SinkConfig) -> None:
        self.min_priority = Priority.parse(config.min_priority)
        self.rules = frozenset(config.rules)
        self.tags = frozenset(config.tags)
        self.containers = frozenset(config.containers)

    def wants(self, finding: Finding) -> bool:
        """True if the finding passes every filter (an empty filter passes everything)."""
        if finding.priority > self.min_priority:
            return False
        if self.rules and finding.rule not in self.rules:
            return False
        if self.tags and self.tags.isdisjoint(finding.tags):
            return False
        container = finding.container
        return not self.containers or not self.containers.isdisjoint(
            (container.name, container.id, container.full_id)
        )
