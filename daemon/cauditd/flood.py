"""Flood shedding: a flood from one container blinds only that container, and names it.

The daemon handles far fewer events per second than a container can make (issue 14). When it
falls behind, the ring buffer fills and the kernel drops events of every container alike, so a
flood in one container would hide another container's `cat /etc/shadow`. Instead, when the
daemon is under pressure (the kernel lost events, or the hand-off to the loop stalled) and one
container sent at least SHED_SHARE of the events and SHED_FLOOR per second, the syscall reader
sheds that container's records before decoding them (~0.2 us each instead of ~10 us through the
pipeline), keeping up to KEPT_EXECS of its execs a second (a new program is what matters most,
and each costs the process table a read of /proc). Shed events are counted as drops, with the
container named, like kernel drops.

Shedding stops once the container sends fewer than SHED_FLOOR events a second, or once the
daemon has gone HOLD_S without falling behind and the container's rate is one the daemon can
follow (under FOLLOW_SHARE of its capacity: events per CPU-second, measured by the daemon on
its own traffic): a container that caused one stall and then keeps busy at a rate the daemon
follows is followed again, else one burst would buy it blindness for as long as it kept busy.
A container let back that makes the daemon fall behind again soon is shed again, and the next
retry waits twice as long, up to MAX_HOLD_S.
"""

from __future__ import annotations

import logging
import struct
import time
from collections import Counter

from cauditd.events import Event
from cauditd.probes.records import EVENT_EXEC, Decoder, Record

log = logging.getLogger(__name__)

SHED_SHARE = 0.5  # of the events of the last check (a quarter second)
SHED_FLOOR = 5_000  # events per second (delivered or shed)
KEPT_EXECS = 100  # execs per second kept from the cgroups being shed
HOLD_S = 2.0  # without pressure for this long, a container the daemon can follow is let back
MAX_HOLD_S = 32.0  # the hold doubles after each retry that fell behind again, up to this
FOLLOW_SHARE = 0.25  # of the capacity: a shed container sending less is let back
CAPACITY = 40_000.0  # events per CPU-second assumed until the daemon has measured its own
CAPACITY_SAMPLE = 2_000  # events in a check for its CPU time to tell the capacity
_KEY = struct.Struct("<QI")  # cgroup_id and kind, at offset 8 of every syscall record


class SheddingDecoder:
    """The reader's decoder while shedding: records of `cgroups` are counted in `shed` (by
    cgroup id, never reset) and skipped, except up to KEPT_EXECS execs a second."""

    def __init__(self, decode: Decoder, cgroups: frozenset[int], shed: Counter[int],
                 kept_execs: int = KEPT_EXECS) -> None:
        self._decode = decode
        self._cgroups = cgroups
        self._shed = shed
        self._kept_execs = kept_execs
        self._second = 0
        self._execs = 0

    def __call__(self, raw: Record) -> Event | None:
        cgroup_id, kind = _KEY.unpack_from(raw, 8)
        if cgroup_id in self._cgroups and not (kind == EVENT_EXEC and self._keep_exec()):
            self._shed[cgroup_id] += 1
            return None
        return self._decode(raw)

    def _keep_exec(self) -> bool:
        second = int(time.monotonic())
        if second != self._second:
            self._second, self._execs = second, 0
        self._execs += 1
        return self._execs <= self._kept_execs


class FloodGuard:
    """Decides, a few times a second, which cgroups the syscall reader sheds."""

    def __init__(self, share: float = SHED_SHARE, floor: int = SHED_FLOOR,
                 hold_s: float = HOLD_S, max_hold_s: float = MAX_HOLD_S) -> None:
        self.share = share
        self.floor = floor
        self.shedding: frozenset[int] = frozenset()
        self._min_hold = hold_s
        self._max_hold = max_hold_s
        self.hold_s = hold_s  # how long the daemon must keep up before shedding stops
        self.capacity = CAPACITY  # events per CPU-second, smoothed
        self._pressure_at = float("-inf")
        self._released_at = float("-inf")

    def observe(self, processed: int, cpu_s: float) -> None:
        """What the daemon processed in one check and the CPU time it took (all its threads,
        so an overestimate of the events' own cost): the capacity that decides which shed
        containers it can follow again."""
        if processed >= CAPACITY_SAMPLE and cpu_s > 0:
            self.capacity = 0.8 * self.capacity + 0.2 * processed / cpu_s

    def decide(self, pressure: bool, sent: Counter[int], seconds: float = 1.0,
               now: float | None = None) -> frozenset[int]:
        """The cgroups to shed next, from the events each sent in the last `seconds`
        (delivered and shed) and whether the daemon fell behind meanwhile."""
        now = time.monotonic() if now is None else now
        if pressure:
            self._pressure_at = now
        floor = self.floor * seconds
        keep = {c for c in self.shedding if sent[c] >= floor}
        if keep and now - self._pressure_at >= self.hold_s:
            followable = FOLLOW_SHARE * self.capacity * seconds
            if any(sent[c] < followable for c in keep):  # kept up for the hold: let them back
                keep = {c for c in keep if sent[c] >= followable}
                self._released_at = now
        total = sum(sent.values())
        if pressure and total and not keep:
            cgroup_id, events = sent.most_common(1)[0]
            if events >= floor and events >= self.share * total:
                keep.add(cgroup_id)
                # Behind again soon after a retry: wait longer before the next one.
                retried = now - self._released_at < 2 * self.hold_s
                self.hold_s = min(2 * self.hold_s, self._max_hold) if retried else self._min_hold
        chosen = frozenset(keep)
        if chosen != self.shedding:
            log.warning("flood shedding: %s", f"cgroups {sorted(chosen)}, until the daemon "
                        f"keeps up for {self.hold_s:.0f} s" if chosen else "off")
        self.shedding = chosen
        return chosen
