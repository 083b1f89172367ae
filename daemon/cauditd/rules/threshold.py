"""Threshold rules: fire once when `count` matches (or distinct values, or the sum of a field)
occur `within` a window.

Memory is bounded: at most `max_keys` `by` keys (least recently seen evicted), and per key at
most `count` timestamps or distinct values, or SUM_BUCKETS partial sums. Time is the events'
own (kernel) clock.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cauditd.events import Event

NS = 1_000_000_000
SUM_BUCKETS = 16  # a sum's window is kept as this many partial sums (bounded, 1/16 precision)
VALUE_MAX = 256  # longer key and distinct values are kept as a 16-byte digest


@dataclass(frozen=True, slots=True)
class ThresholdSpec:
    """`threshold = { count, within, by, distinct }` of a rule, with resolved extractors."""

    count: int
    within_ns: int
    by: tuple[tuple[str, Callable[[Event], Any]], ...] = ()
    distinct: tuple[str, Callable[[Event], Any]] | None = None
    total: tuple[str, Callable[[Event], Any]] | None = None  # `sum`: add this field's values
    max_keys: int = 10000


@dataclass(slots=True)
class _Window:
    times: deque[int] = field(default_factory=deque)
    distinct: dict[Any, int] = field(default_factory=dict)
    sums: dict[int, int] = field(default_factory=dict)  # bucket index -> partial sum
    muted_until: int = 0


class Threshold:
    """Per-rule threshold state; `observe(event)` is True on the match that reaches the count."""

    def __init__(self, spec: ThresholdSpec) -> None:
        self.spec = spec
        self.windows: OrderedDict[tuple[Any, ...], _Window] = OrderedDict()

    def key(self, event: Event) -> tuple[Any, ...]:
        return tuple(bounded(get(event)) for _, get in self.spec.by)

    def observe(self, event: Event) -> bool:
        """Count one match; True exactly once per window per key when the threshold is met."""
        key = self.key(event)
        window = self.windows.get(key)
        if window is None:
            window = self.windows[key] = _Window(times=deque(maxlen=self.spec.count))
            if len(self.windows) > self.spec.max_keys:
                self.windows.popitem(last=False)
        else:
            self.windows.move_to_end(key)
        now = event.ts_ns
        if now < window.muted_until:
            return False
        if self.spec.total is not None:
            return self._sum(window, now, self.spec.total[1](event))
        if self.spec.distinct is None:
            return self._count(window, now)
        return self._distinct(window, now, bounded(self.spec.distinct[1](event)))

    def _count(self, window: _Window, now: int) -> bool:
        window.times.append(now)
        if len(window.times) < self.spec.count or now - window.times[0] > self.spec.within_ns:
            return False
        return self._fire(window, now)

    def _distinct(self, window: _Window, now: int, value: Any) -> bool:
        if value is None:
            return False
        seen = window.distinct
        seen.pop(value, None)
        seen[value] = now
        horizon = now - self.spec.within_ns
        for old, when in list(seen.items()):
            if when >= horizon:
                break
            del seen[old]
        if len(seen) < self.spec.count:
            return False
        return self._fire(window, now)

    def _sum(self, window: _Window, now: int, value: Any) -> bool:
        if not isinstance(value, int | float) or isinstance(value, bool):
            return False
        width = max(1, self.spec.within_ns // SUM_BUCKETS)
        bucket = now // width
        sums = window.sums
        sums[bucket] = sums.get(bucket, 0) + int(value)
        for old in [b for b in sums if b <= bucket - SUM_BUCKETS]:
            del sums[old]
        if sum(sums.values()) < self.spec.count:
            return False
        return self._fire(window, now)

    def _fire(self, window: _Window, now: int) -> bool:
        window.times.clear()
        window.distinct.clear()
        window.sums.clear()
        window.muted_until = now + self.spec.within_ns
        return True


def bounded(value: Any) -> Any:
    """A key or distinct value as kept in memory: text a process chose longer than VALUE_MAX
    becomes its digest (equal values stay equal), so max_keys bounds bytes too."""
    if isinstance(value, str) and len(value) > VALUE_MAX:
        return hashlib.blake2b(value.encode("utf-8", "surrogateescape"), digest_size=16).digest()
    return value


def parse_duration(text: str | int | float) -> int:
    """"10s", "500ms", "5m", "1h" or a number of seconds, as nanoseconds."""
    if isinstance(text, bool):
        raise ValueError("a duration, not a boolean")
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
        body = text.strip()
        for unit in ("ms", "s", "m", "h"):
            if body.endswith(unit):
                seconds = float(body[: -len(unit)]) * units[unit]
                break
        else:
            seconds = float(body)
    if seconds <= 0:
        raise ValueError("a duration must be positive")
    return int(seconds * NS)
