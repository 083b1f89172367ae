"""Detection: the rule engine between decoded events and the findings store, and its reloads."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cauditd import metrics, text
from cauditd.budget import FindingBudget
from cauditd.config import RulesConfig
from cauditd.events import ContainerInfo
from cauditd.findings import ContainerRef, Finding, Priority
from cauditd.rules import RuleEngine, RuleSet, RuleSetError, default_rules_dir, load_ruleset
from cauditd.rules.engine import container_ref_of
from cauditd.store import FindingStore

log = logging.getLogger(__name__)

DEFAULT_USER_RULES = "/etc/cauditd/rules.d"
DROP_RULE = "Syscall event drop"
FAILURE_RULE = "Event processing failure"
ALARM_WINDOW_NS = 60 * 1_000_000_000
MAX_UNNAMED = 4096  # containers remembered as having findings named by their short id
# Why events were lost (report_drops): the phrase a drop finding and the log give each count.
RING_FULL = "as the ring buffer was full"
SHED = "shed from the flooding container"
BACKLOG = "as the DNS parser's backlog was full"


def rule_paths(config: RulesConfig) -> list[Path]:
    """The rule files and directories to load, in order: shipped defaults, then the user's.

    The default user directory is skipped when it does not exist; any other configured path
    that is missing is the loader's error to report.
    """
    paths = [default_rules_dir()] if config.default_rules else []
    for entry in config.paths:
        path = Path(entry)
        if entry == DEFAULT_USER_RULES and not path.exists():
            continue
        paths.append(path)
    return paths


def compile_rules(config: RulesConfig) -> RuleSet:
    """Load and compile the configured rules; raises RuleSetError with every problem. What
    Falco files hold that cannot load is logged, one line each."""
    ruleset = load_ruleset(rule_paths(config), min_priority=Priority.parse(config.min_priority))
    for notice in ruleset.notices:
        log.warning("rules: %s", notice)
    return ruleset


class Detector:
    """Runs every event through the rules and hands findings to the store.

    `on_rules_changed` is called with the new rule set after each load, so the probes can
    filter in the kernel what no rule uses (syscalls, opens by path).
    """

    def __init__(
        self,
        config: RulesConfig,
        store: FindingStore,
        *,
        hostname: str = "",
        on_rules_changed: Callable[[RuleSet], None] | None = None,
    ) -> None:
        self._config = config
        self._store = store
        self._hostname = hostname
        self._on_rules_changed = on_rules_changed
        self.engine = RuleEngine(compile_rules(config), suppress_window_s=config.suppress_window_s)
        self.budget = FindingBudget(config.finding_budget, config.finding_budget_window_s)
        self._alarms: dict[tuple[str, str], Finding] = {}
        # Containers with findings named by their short id (metadata late), oldest first.
        self._unnamed: dict[str, None] = {}
        self._reload_lock = asyncio.Lock()

    def rules_changed(self) -> None:
        if self._on_rules_changed is not None:
            self._on_rules_changed(self.engine.ruleset)

    def process(self, event: Any) -> None:
        """Match one event; new findings go to the store at once (per-event path)."""
        findings = self.engine.match(event)
        if findings:
            now_ns = time.time_ns()
            for finding in findings:
                admitted = self.budget.admit(finding)
                if admitted is not finding:
                    self.engine.fold(finding, self.budget.summary_of(finding))
                if admitted is not None:
                    self._accept(admitted, now_ns)

    def flush_updates(self) -> None:
        """Hand the store the new counts of suppressed repeats and budget summaries (the
        daemon's housekeeping, once a second, and the pipeline's flush at stop)."""
        for finding in (*self.engine.drain_updates(), *self.budget.drain()):
            if finding.id is not None:
                self._store.update(finding)

    def _accept(self, finding: Finding, now_ns: int) -> None:
        if self._hostname:
            finding.hostname = self._hostname
        self._store.add(finding)
        ref = finding.container
        if ref.full_id and ref.name == ref.id:
            self._unnamed[ref.full_id] = None
            if len(self._unnamed) > MAX_UNNAMED:
                del self._unnamed[next(iter(self._unnamed))]
        metrics.DETECTION_LATENCY.observe(max(0, now_ns - finding.time_ns) / 1e9)

    def container_named(self, container: ContainerInfo) -> None:
        """Its metadata came after its first findings (the hold-back ran out): the findings
        named by its short id take its name, image and pod, those whose repeats still count in
        memory and those stored."""
        ref = container_ref_of(container)
        if ref.name == ref.id or ref.full_id not in self._unnamed:
            return  # no name came either, or no finding of it waits for one
        del self._unnamed[ref.full_id]
        remembered = (*self.engine.remembered(), *self.budget.summaries(), *self._alarms.values())
        for finding in remembered:
            if finding.container.full_id == ref.full_id and finding.container.name == ref.id:
                finding.container = ref
        self._store.name_container(ref)

    async def reload(self, config: RulesConfig | None = None) -> list[str]:
        """Compile the rules aside and swap them in; the errors of a refused set, else []."""
        async with self._reload_lock:
            fresh = config or self._config
            try:
                ruleset = await asyncio.to_thread(compile_rules, fresh)
            except RuleSetError as exc:
                log.error("rules reload refused, the running rules stay: %s", exc)
                return [str(e) for e in exc.errors]
            self._config = fresh
            self.engine.swap(ruleset)
            self.rules_changed()
            log.info("rules reloaded: %d rules", len(ruleset.rules))
            return []

    def rules_info(self) -> list[dict[str, Any]]:
        return self.engine.rules_info()

    def report_drops(self, probe: str, drops: Mapping[str, int], loaders: list[Load]) -> None:
        """Turn lost events into a finding (Falco's "syscall event drop"), `drops` counted by
        cause (RING_FULL: the kernel's; SHED: the reader's, from a flooding container, see
        cauditd.flood; BACKLOG: the DNS parser's), naming the containers that sent the most
        events meanwhile (a flood is attributed).

        Drops within a minute of the last drop finding add to it rather than starting a new one.
        """
        total = sum(drops.values())
        causes = describe_drops(drops)
        share = describe_load(loaders)
        self._alarm(
            DROP_RULE, probe, total, "evt.lost",
            lambda: f"{probe} probes lost {total} events ({causes}; detection "
            f"may have missed activity){share}",
            {"probe": probe, "load.top": load_fields(loaders)},
            loaders[0].container if loaders else None,
        )

    def report_failures(self, stage: str, failed: int, error: str,
                        container: ContainerInfo | None) -> None:
        """Events that raised on the way to the rules (one bad event never takes its batch
        with it): a finding per stage and minute whose count and evt.failed grow."""
        self._alarm(
            FAILURE_RULE, stage, failed, "evt.failed",
            lambda: f"{failed} events failed in the {stage} stage and were not matched "
            f"(detection may have missed activity): {error}",
            {"stage": stage, "error": error},
            container,
        )

    def _alarm(self, rule: str, key: str, amount: int, counter: str,
               output: Callable[[], str], fields: dict[str, Any],
               container: ContainerInfo | None) -> None:
        """A cauditd-internal finding per rule and key and minute; later reports in the same
        minute add `amount` to its `counter` field and its count."""
        now_ns = time.time_ns()
        current = self._alarms.get((rule, key))
        if current is not None and now_ns - current.last_time_ns < ALARM_WINDOW_NS:
            current.count += 1
            current.last_time_ns = now_ns
            current.output_fields[counter] = int(current.output_fields[counter]) + amount
            current.output_fields.update(fields)
            self._store.update(current)
            return
        finding = Finding(
            rule=rule,
            priority=Priority.WARNING,
            source="internal",
            output=text.printable(output()),
            time_ns=now_ns,
            output_fields=text.printable_value({counter: amount, **fields}),
            tags=("cauditd_internal",),
            container=ContainerRef() if container is None else container_ref_of(container),
            key=f"{rule}\x1e{key}",
        )
        self._alarms[(rule, key)] = finding
        self._accept(finding, now_ns)


@dataclass(frozen=True, slots=True)
class Load:
    """How many events one container sent in the last seconds (see pipeline.LoadMeter)."""

    container: ContainerInfo
    events: int
    share: float  # of all events in that time, 0..1


def describe_drops(drops: Mapping[str, int]) -> str:
    return ", ".join(f"{count} {cause}" for cause, count in drops.items() if count)


def describe_load(loaders: list[Load]) -> str:
    if not loaders:
        return ""
    top = loaders[0]
    name = top.container.name or top.container.short_id
    return f"; most events from {name} ({top.share:.0%} of the last seconds' events)"


def load_fields(loaders: list[Load]) -> list[dict[str, Any]]:
    return [
        {"container": load.container.name or load.container.short_id,
         "id": load.container.short_id, "events": load.events}
        for load in loaders
    ]
