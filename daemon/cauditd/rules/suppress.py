"""Repeat suppression: one Finding per (rule, container, key fields) within a window.

Repeats bump `count` and `last_time_ns` on the first Finding and are queued for
`drain_updates`. Memory is bounded by `max_keys` (oldest evicted first).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from cauditd.findings import Finding


class Suppressor:
    """Remembers recent findings by key for `window_s` seconds of `clock`."""

    def __init__(self, window_s: float, clock: Callable[[], float],
                 max_keys: int = 10000) -> None:
        self.window_s = window_s
        self.clock = clock
        self.max_keys = max_keys
        self.recent: OrderedDict[str, tuple[float, Finding]] = OrderedDict()
        self.updates: dict[int, Finding] = {}

    def repeat(self, key: str, time_ns: int) -> bool:
        """True (and the earlier finding updated) when `key` was seen within the window."""
        if self.window_s <= 0:
            return False
        entry = self.recent.get(key)
        if entry is None:
            return False
        started, finding = entry
        if self.clock() - started > self.window_s:
            del self.recent[key]
            return False
        finding.count += 1
        finding.last_time_ns = max(finding.last_time_ns, time_ns)
        self.updates[id(finding)] = finding
        return True

    def remember(self, key: str, finding: Finding) -> None:
        if self.window_s <= 0:
            return
        self.recent[key] = (self.clock(), finding)
        self.recent.move_to_end(key)
        self._expire()

    def alias(self, key: str, finding: Finding) -> None:
        """Let repeats of `key` count on `finding` from now on (a budget summary that the
        finding remembered under `key` was folded into)."""
        entry = self.recent.get(key)
        if entry is not None:
            self.recent[key] = (entry[0], finding)

    def _expire(self) -> None:
        now = self.clock()
        while self.recent:
            key, (started, _) = next(iter(self.recent.items()))
            if len(self.recent) <= self.max_keys and now - started <= self.window_s:
                break
            del self.recent[key]

    def drain(self) -> list[Finding]:
        """Findings whose count changed since the last drain."""
        updated = list(self.updates.values())
        self.updates.clear()
        return updated
