"""Compiled rules and the rule set: rules indexed by evt.type, built once, swapped whole."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cauditd.events import Event
from cauditd.findings import Priority
from cauditd.rules.errors import Notice, Where
from cauditd.rules.fields import EVENT_TYPES, NETWORK_TYPES, OPEN_TYPES, SYSCALL_TYPES
from cauditd.rules.index import DirectionIndex, ExecIndex, OpenIndex
from cauditd.rules.output import OutputTemplate
from cauditd.rules.prefilter import (
    ACCEPT_TYPES,
    ANYTHING,
    CONNECT_TYPES,
    DUP_TYPES,
    EXEC_TYPES,
    SOCKET_TYPES,
    AcceptFilter,
    Clauses,
    ConnectFilter,
    DupFilter,
    KernelFilters,
    OpenFilter,
    SocketFilter,
    union,
)
from cauditd.rules.threshold import Threshold


@dataclass(slots=True, eq=False)
class Rule:
    """One compiled rule. `event_types` is None when the condition does not constrain evt.type."""

    name: str
    description: str
    condition: str
    priority: Priority
    source: str
    tags: tuple[str, ...]
    enabled: bool
    predicate: Callable[[Event], bool]
    output: OutputTemplate
    event_types: frozenset[str] | None
    opens: Clauses = ANYTHING  # the opens the condition can match (rules.prefilter)
    connects: Clauses = ANYTHING  # the connects and sendtos it can match
    dups: Clauses = ANYTHING  # the dups onto fds 0-2 it can match
    sockets: Clauses = ANYTHING  # the new sockets it can match
    accepts: Clauses = ANYTHING  # the accepts it can match
    execs: Clauses = ANYTHING  # the execs (by proc.name) it can match (rules.index)
    served_inbound: bool = True  # it can match a new inbound flow to a port already served
    directions: frozenset[str] | None = None  # the net.direction values it can match (None: any)
    env_names: frozenset[str] | None = frozenset()  # what it reads of proc.env (None: unknown)
    suppress_by: tuple[tuple[str, Callable[[Event], Any]], ...] = ()
    threshold: Threshold | None = None
    where: Where = field(default_factory=Where)


class RuleSet:
    """The enabled rules indexed by evt.type, opens further by path, mode and result, execs
    by proc.name and network events by net.direction (rules.index); `candidates(event)` is a
    dict lookup or a few.

    `notices` says what the files held that did not load (skipped rules of Falco files)."""

    def __init__(self, rules: list[Rule], notices: list[Notice] | None = None) -> None:
        self.rules = tuple(rules)
        self.notices = tuple(notices or ())
        enabled = [r for r in rules if r.enabled]
        self.wildcard: dict[str, tuple[Rule, ...]] = {
            source: tuple(r for r in enabled if r.source == source and r.event_types is None)
            for source in EVENT_TYPES
        }
        self.by_type: dict[str, tuple[Rule, ...]] = {}
        for source, types in EVENT_TYPES.items():
            for evt_type in types:
                self.by_type[evt_type] = tuple(
                    r for r in enabled
                    if r.source == source
                    and (r.event_types is None or evt_type in r.event_types)
                )
        self.indexes: dict[str, OpenIndex | ExecIndex | DirectionIndex] = {
            **{t: OpenIndex(self.by_type[t]) for t in OPEN_TYPES if t in self.by_type},
            **{t: ExecIndex(self.by_type[t]) for t in EXEC_TYPES if t in self.by_type},
            **{t: DirectionIndex(self.by_type[t]) for t in NETWORK_TYPES},
        }

    def candidates(self, event: Event) -> tuple[Rule, ...]:
        """The enabled rules that can match `event` (by its type and source, an open's by its
        path, access mode and result, an exec's by its proc.name)."""
        index = self.indexes.get(event.type)
        if index is not None:
            return index.candidates(event)
        rules = self.by_type.get(event.type)
        if rules is None:
            return self.wildcard.get(event.source, ())
        return rules

    def needed_syscalls(self) -> set[str]:
        """evt.type values the enabled syscall rules can match (all known ones if unbounded)."""
        needed: set[str] = set()
        for rule in self.rules:
            if not rule.enabled or rule.source != "syscall":
                continue
            if rule.event_types is None:
                return set(SYSCALL_TYPES)
            needed |= rule.event_types
        return needed

    def served_inbound_flows(self) -> bool:
        """Whether some enabled network rule can match the flow_new of a new inbound flow to a
        port its container already serves (else the kernel sends none: probes/net.c)."""
        return any(r.enabled and r.source == "network" and r.served_inbound
                   and (r.event_types is None or "flow_new" in r.event_types)
                   for r in self.rules)

    def env_names(self) -> frozenset[str] | None:
        """The environment variables the enabled syscall rules read through proc.env, by name
        (rules.prefilter.env_names); None when some rule reads it otherwise."""
        names: set[str] = set()
        for rule in self.rules:
            if not rule.enabled or rule.source != "syscall":
                continue
            if rule.env_names is None:
                return None
            names |= rule.env_names
        return frozenset(names)

    def kernel_filters(self) -> KernelFilters:
        """What the kernel may drop for this rule set (rules.prefilter)."""
        return KernelFilters(self.open_filter(), self.connect_filter(), self.dup_filter(),
                             self.socket_filter(), self.accept_filter())

    def open_filter(self) -> OpenFilter:
        """The opens (path, access mode) the enabled syscall rules can match."""
        return OpenFilter(union(r.opens for r in self._rules_for(OPEN_TYPES)))

    def connect_filter(self) -> ConnectFilter:
        """The connects and sendtos (destination) the enabled syscall rules can match."""
        return ConnectFilter(union(r.connects for r in self._rules_for(CONNECT_TYPES)))

    def dup_filter(self) -> DupFilter:
        """The dups onto fds 0-2 the enabled syscall rules can match (socket or any)."""
        return DupFilter(union(r.dups for r in self._rules_for(DUP_TYPES)))

    def socket_filter(self) -> SocketFilter:
        """The new sockets (address family, fd 0-2) the enabled syscall rules can match."""
        return SocketFilter(union(r.sockets for r in self._rules_for(SOCKET_TYPES)))

    def accept_filter(self) -> AcceptFilter:
        """The accepts (of a piped process, or any) the enabled syscall rules can match."""
        return AcceptFilter(union(r.accepts for r in self._rules_for(ACCEPT_TYPES)))

    def _rules_for(self, types: frozenset[str]) -> list[Rule]:
        return [r for r in self.rules if r.enabled and r.source == "syscall"
                and (r.event_types is None or r.event_types & types)]

    def __len__(self) -> int:
        return len(self.rules)
