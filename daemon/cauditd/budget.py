"""Finding budgets: how many new findings one rule may make about one container per window.

Repeat suppression merges repeats of one key (rule, container, key fields), but a key field a
process chooses (a path, an argv) makes every repeat new: a loop over distinct file names would
make one finding each, flood the store, the chat and the retention that erases older evidence.
Past `limit` findings per (container, rule) in a window, further findings are folded into one
summary finding for that container, rule and window: it carries the rule's name and priority,
the latest folded output, and a count that grows. A summary is itself a finding, so it is
stored, streamed and alerted like one.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace

from cauditd.findings import Finding

BUDGET_TAG = "cauditd_budget"
MAX_KEYS = 10_000  # (container, rule) pairs followed at once; the least recent is forgotten


@dataclass(slots=True)
class _Window:
    started: float
    used: int = 0
    summary: Finding | None = None


class FindingBudget:
    """`admit(finding)`: the finding to store (itself, or a new summary), or None when it was
    folded into this window's summary (then in `updates`, for the store's update)."""

    def __init__(self, limit: int, window_s: float,
                 clock: Callable[[], float] = time.monotonic, max_keys: int = MAX_KEYS) -> None:
        self.limit = limit
        self.window_s = window_s
        self.clock = clock
        self.max_keys = max_keys
        self.folded = 0  # findings folded into summaries since start
        self.updates: dict[int, Finding] = {}
        self._windows: OrderedDict[tuple[str, str], _Window] = OrderedDict()

    def admit(self, finding: Finding) -> Finding | None:
        if self.limit <= 0:
            return finding
        window = self._window((finding.container.full_id, finding.rule))
        window.used += 1
        if window.used <= self.limit:
            return finding
        self.folded += 1
        if window.summary is None:
            window.summary = self._summary(finding)
            return window.summary
        self._fold(window.summary, finding, window.used - self.limit)
        return None

    def summary_of(self, finding: Finding) -> Finding:
        """The summary `finding` was folded into (after `admit` returned something else)."""
        summary = self._windows[(finding.container.full_id, finding.rule)].summary
        assert summary is not None
        return summary

    def summaries(self) -> list[Finding]:
        """The summaries of the windows still open (later folds update them)."""
        return [w.summary for w in self._windows.values() if w.summary is not None]

    def drain(self) -> list[Finding]:
        """Summaries whose count grew since the last call."""
        updated = list(self.updates.values())
        self.updates.clear()
        return updated

    def _window(self, key: tuple[str, str]) -> _Window:
        now = self.clock()
        window = self._windows.get(key)
        if window is None or now - window.started >= self.window_s:
            window = _Window(started=now)
            self._windows[key] = window
            if len(self._windows) > self.max_keys:
                self._windows.popitem(last=False)
        self._windows.move_to_end(key)
        return window

    def _summary(self, first: Finding) -> Finding:
        summary = replace(
            first,
            tags=(*first.tags, BUDGET_TAG),
            output_fields={**first.output_fields},
            key=f"{first.key}\x1e{BUDGET_TAG}",
            id=None,
        )
        self._describe(summary, first, 1)
        return summary

    def _fold(self, summary: Finding, finding: Finding, folded: int) -> None:
        summary.count += finding.count
        summary.last_time_ns = max(summary.last_time_ns, finding.last_time_ns)
        summary.process = finding.process
        summary.output_fields.update(finding.output_fields)
        self._describe(summary, finding, folded)
        self.updates[id(summary)] = summary

    def _describe(self, summary: Finding, latest: Finding, folded: int) -> None:
        """`folded` distinct findings so far; the summary's count also has their repeats."""
        name = summary.container.name or summary.container.id
        summary.output = (
            f"{folded} more findings of this rule about {name} after {self.limit} "
            f"within {self.window_s:g}s, folded here (finding budget); latest: {latest.output}"
        )
        summary.output_fields["budget.folded"] = folded
        summary.output_fields["budget.limit"] = self.limit
        summary.output_fields["budget.window_s"] = self.window_s
