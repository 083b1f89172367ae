"""Flood control: a token bucket per sink, its rate written as "20/min", "5/s" or "100/h"."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass

_UNITS = {
    "s": 1.0, "sec": 1.0, "second": 1.0,
    "m": 60.0, "min": 60.0, "minute": 60.0,
    "h": 3600.0, "hour": 3600.0,
    "d": 86400.0, "day": 86400.0,
}  # fmt: skip
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*\.?\d*)\s*([a-z]+)\s*$")


@dataclass(frozen=True, slots=True)
class Rate:
    """At most `count` messages per `period_s` seconds (and a burst of `count`)."""

    count: int
    period_s: float

    def __str__(self) -> str:
        return f"{self.count}/{self.period_s:g}s"


def parse_rate(text: str) -> Rate | None:
    """Parse "20/min", "5/s", "100/h", "2/10s"; "", "0" and "none" mean no limit (None)."""
    if text.strip().lower() in ("", "0", "none", "unlimited"):
        return None
    match = _RATE.match(text.lower())
    if match is None or match.group(3) not in _UNITS:
        raise ValueError(f'rate limit {text!r} is not like "20/min", "5/s" or "100/h"')
    count = int(match.group(1))
    period = float(match.group(2) or 1) * _UNITS[match.group(3)]
    if count <= 0 or period <= 0:
        raise ValueError(f"rate limit {text!r} must allow at least one message")
    return Rate(count, period)


class TokenBucket:
    """A token bucket of `rate.count` tokens refilled at count/period; no rate, no limit."""

    def __init__(self, rate: Rate | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self._clock = clock
        self._tokens = float(rate.count) if rate else 0.0
        self._stamp = clock()

    def try_take(self) -> bool:
        """Take one token if there is one."""
        if self.rate is None:
            return True
        self._refill()
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def wait_s(self) -> float:
        """Seconds until a token is available (0 if one is)."""
        if self.rate is None:
            return 0.0
        self._refill()
        missing = 1.0 - self._tokens
        return max(0.0, missing * self.rate.period_s / self.rate.count)

    def _refill(self) -> None:
        assert self.rate is not None
        now = self._clock()
        per_s = self.rate.count / self.rate.period_s
        self._tokens = min(float(self.rate.count), self._tokens + (now - self._stamp) * per_s)
        self._stamp = now
