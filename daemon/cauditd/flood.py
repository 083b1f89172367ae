"""Flood shedding: a flood from one container blinds only that container, and names it.

The daemon handles far fewer events per second than a container can make (issue 14). When it
falls behind, the ring buffer fills and the kernel drops events of every container alike, so a
flood in one container would hide another container's `cat /etc/shadow`. Instead, when the
daemon is under pressure (the kernel lost events, or the hand-off to the loop stalled) and one
container sent at least SHED_SHARE of the events and SHED_FLOOR per second, the syscall reader
sheds that container's records before decoding them (~0.2 us each instead of ~10 us through the
pipeline), keeping up to KEPT_EXECS of its execs a second (a new program is what matters most,
and each costs the process table a read of /proc). Shedding stops once the container sends fewer
than SHED_FLOOR events a second. Shed events are counted as drops, with the container named,
like kernel drops.
"""

from __future__ import annotations

import logging
import struct
import time
from collections import Counter
from collections.abc import Callable

from cauditd.events import Event
from cauditd.probes.records import EVENT_EXEC, Record

log = logging.getLogger(__name__)

SHED_SHARE = 0.5  # of the events of the last check (a quarter second)
SHED_FLOOR = 5_000  # events per second (delivered or shed)
KEPT_EXECS = 100  # execs per second kept from the cgroups being shed
_KEY = struct.Struct("<QI")  # cgroup_id and kind, at offset 8 of every syscall record
Decoder = Callable[[Record], Event | None]


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

    def __init__(self, share: float = SHED_SHARE, floor: int = SHED_FLOOR) -> None:
        self.share = share
        self.floor = floor
        self.shedding: frozenset[int] = frozenset()

    def decide(self, pressure: bool, sent: Counter[int], seconds: float = 1.0) -> frozenset[int]:
        """The cgroups to shed next, from the events each sent in the last `seconds`
        (delivered and shed) and whether the daemon fell behind meanwhile."""
        floor = self.floor * seconds
        keep = {c for c in self.shedding if sent[c] >= floor}
        total = sum(sent.values())
        if pressure and total and not keep:
            cgroup_id, events = sent.most_common(1)[0]
            if events >= floor and events >= self.share * total:
                keep.add(cgroup_id)
        chosen = frozenset(keep)
        if chosen != self.shedding:
            log.warning("flood shedding: %s", f"cgroups {sorted(chosen)}" if chosen else "off")
        self.shedding = chosen
        return chosen
