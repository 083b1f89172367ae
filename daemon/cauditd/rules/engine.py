"""The rule engine: events in, Findings out, through the compiled, type-indexed rule set."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from typing import Any

from cauditd import metrics, text
from cauditd.events import ContainerInfo, Event, SyscallEvent
from cauditd.findings import ContainerRef, Finding, ProcessRef
from cauditd.rules import fields
from cauditd.rules.output import format_value
from cauditd.rules.ruleset import Rule, RuleSet
from cauditd.rules.suppress import Suppressor

log = logging.getLogger(__name__)

MAX_PARENTS = 8
KEY_VALUES_MAX = 256
LOGGED_ERRORS_PER_RULE = 5


class RuleEngine:
    """Matches events against a RuleSet; merges repeats; reloads by `swap` in one assignment."""

    def __init__(self, ruleset: RuleSet, *, suppress_window_s: float,
                 clock: Callable[[], float] = time.monotonic,
                 max_suppress_keys: int = 10000) -> None:
        self._ruleset = ruleset
        self._suppressor = Suppressor(suppress_window_s, clock, max_suppress_keys)
        self._matches: dict[str, int] = {}
        self._errors_logged: dict[str, int] = {}

    @property
    def ruleset(self) -> RuleSet:
        return self._ruleset

    def swap(self, ruleset: RuleSet) -> None:
        """Replace the rule set atomically (compile it aside first with load_ruleset)."""
        self._ruleset = ruleset

    def match(self, event: Event) -> list[Finding]:
        """New findings for `event`; repeats within the window go to `drain_updates`."""
        findings: list[Finding] = []
        for rule in self._ruleset.candidates(event):
            try:
                if not rule.predicate(event):
                    continue
                if rule.threshold is not None and not rule.threshold.observe(event):
                    continue
                finding = self._finding(rule, event)
            except Exception as exc:  # one broken rule never stops matching
                self._rule_failed(rule, exc)
                continue
            self._matches[rule.name] = self._matches.get(rule.name, 0) + 1
            if finding is not None:
                metrics.FINDINGS.labels(rule.name, rule.priority.label).inc()
                findings.append(finding)
        return findings

    def fold(self, finding: Finding, into: Finding) -> None:
        """`finding` was folded into `into` (a finding budget's summary): its repeats count
        there from now on."""
        self._suppressor.alias(finding.key, into)

    def remembered(self) -> list[Finding]:
        """The findings whose repeats still count on them (within the suppression window)."""
        return [finding for _, finding in self._suppressor.recent.values()]

    def drain_updates(self) -> list[Finding]:
        """Earlier findings whose count/last_time_ns grew since the last call."""
        return self._suppressor.drain()

    def rules_info(self) -> list[dict[str, Any]]:
        """Every loaded rule: name, enabled, priority, tags, source and match count."""
        return [
            {
                "name": rule.name,
                "description": rule.description,
                "enabled": rule.enabled,
                "priority": rule.priority.label,
                "tags": list(rule.tags),
                "source": rule.source,
                "matches": self._matches.get(rule.name, 0),
            }
            for rule in self._ruleset.rules
        ]

    def _finding(self, rule: Rule, event: Event) -> Finding | None:
        wall_ns = event.wall_ns
        key = suppression_key(rule, event)
        if self._suppressor.repeat(key, wall_ns):
            return None
        output, fields = rule.output.render(event)
        finding = Finding(  # an output boundary: undecodable bytes written as \xNN (cauditd.text)
            rule=rule.name,
            priority=rule.priority,
            source=rule.source,
            output=text.printable(output),
            time_ns=wall_ns,
            output_fields=text.printable_value(fields),
            tags=rule.tags,
            container=container_ref(event),
            process=process_ref(event),
            key=key,
        )
        self._suppressor.remember(key, finding)
        return finding

    def _rule_failed(self, rule: Rule, exc: Exception) -> None:
        metrics.RULE_ERRORS.labels(rule.name).inc()
        logged = self._errors_logged.get(rule.name, 0)
        if logged < LOGGED_ERRORS_PER_RULE:
            self._errors_logged[rule.name] = logged + 1
            log.error("rule %r raised on an event", rule.name, exc_info=exc)


def suppression_key(rule: Rule, event: Event) -> str:
    """Rule, full container id and the rule's key fields, as one string. Key fields a process
    chose (paths, argv) longer than KEY_VALUES_MAX are kept as their digest, so the bounded
    suppressor stays bounded in bytes too."""
    values = "\x1f".join(format_value(get(event)) for _, get in rule.suppress_by)
    if len(values) > KEY_VALUES_MAX:
        values = "#" + hashlib.blake2b(values.encode("utf-8", "surrogateescape"),
                                       digest_size=16).hexdigest()
    return f"{rule.name}\x1e{event.container.id}\x1e{values}"


def container_ref(event: Event) -> ContainerRef:
    return container_ref_of(event.container)


def container_ref_of(info: ContainerInfo) -> ContainerRef:
    p = text.printable
    return ContainerRef(id=p(info.short_id), full_id=p(info.id), name=p(info.name or info.short_id),
                        image=p(info.image), pod=p(info.pod_name), namespace=p(info.pod_namespace))


def process_ref(event: Event) -> ProcessRef | None:
    if not isinstance(event, SyscallEvent):
        return None
    proc = event.process
    printable = text.printable
    parents = [] if proc is None else [
        {"pid": p.pid, "exe": printable(p.exe), "name": printable(p.name)}
        for p in proc.ancestors(MAX_PARENTS)
    ]
    return ProcessRef(
        pid=event.pid,
        exe=printable(fields.FIELDS["proc.exepath"].extract(event) or ""),
        cmdline=printable(fields.FIELDS["proc.cmdline"].extract(event) or ""),
        parents=parents,
    )
