"""Detection: the rule engine between decoded events and the findings store, and its reloads."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cauditd import metrics
from cauditd.config import RulesConfig
from cauditd.findings import ContainerRef, Finding, Priority
from cauditd.rules import RuleEngine, RuleSet, RuleSetError, default_rules_dir, load_ruleset
from cauditd.store import FindingStore

log = logging.getLogger(__name__)

DEFAULT_USER_RULES = "/etc/cauditd/rules.d"
DROP_RULE = "Syscall event drop"
DROP_WINDOW_NS = 60 * 1_000_000_000


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
        self._drop_finding: Finding | None = None
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
                self._accept(finding, now_ns)

    def flush_updates(self) -> None:
        """Hand the store the new counts of suppressed repeats (once per batch)."""
        for finding in self.engine.drain_updates():
            self._store.update(finding)

    def _accept(self, finding: Finding, now_ns: int) -> None:
        if self._hostname:
            finding.hostname = self._hostname
        self._store.add(finding)
        metrics.DETECTION_LATENCY.observe(max(0, now_ns - finding.time_ns) / 1e9)

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

    def report_drops(self, probe: str, lost: int) -> None:
        """Turn lost kernel events into a finding (Falco's "syscall event drop").

        Drops within a minute of the last drop finding add to it rather than starting a new one.
        """
        now_ns = time.time_ns()
        current = self._drop_finding
        if current is not None and now_ns - current.last_time_ns < DROP_WINDOW_NS:
            current.count += 1
            current.last_time_ns = now_ns
            current.output_fields["evt.lost"] = int(current.output_fields["evt.lost"]) + lost
            self._store.update(current)
            return
        self._drop_finding = Finding(
            rule=DROP_RULE,
            priority=Priority.WARNING,
            source="internal",
            output=f"{probe} probes lost {lost} events: the ring buffer was full "
            "(detection may have missed activity)",
            time_ns=now_ns,
            output_fields={"evt.lost": lost, "probe": probe},
            tags=("cauditd_internal",),
            container=ContainerRef(),
            key=f"{DROP_RULE}\x1e{probe}",
        )
        self._accept(self._drop_finding, now_ns)
