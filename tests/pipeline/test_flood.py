"""Flood shedding decisions and the shedding decoder (the reader-side half)."""

from __future__ import annotations

from collections import Counter

from cauditd.events import FileEvent
from cauditd.flood import FloodGuard, SheddingDecoder
from cauditd.probes import records

FLOOD, QUIET, BUSY = 11, 22, 33


def test_shedding_starts_under_pressure_for_the_dominant_sender_and_stops_when_it_calms() -> None:
    guard = FloodGuard(share=0.5, floor=1000)
    storm = Counter({FLOOD: 90_000, QUIET: 50})
    assert guard.decide(pressure=False, sent=storm) == frozenset()  # not behind: nothing shed
    assert guard.decide(pressure=True, sent=storm) == {FLOOD}
    assert guard.decide(pressure=False, sent=storm) == {FLOOD}  # still flooding
    assert guard.decide(pressure=False, sent=Counter({FLOOD: 500, QUIET: 50})) == frozenset()


def test_no_one_is_shed_when_the_load_is_shared_or_small() -> None:
    guard = FloodGuard(share=0.5, floor=1000)
    assert guard.decide(True, Counter({FLOOD: 40_000, BUSY: 45_000, QUIET: 30_000})) == set()
    assert guard.decide(True, Counter({FLOOD: 900})) == set()


def header(cgroup_id: int, kind: int) -> bytes:
    return records.HEADER.pack(1, cgroup_id, kind, 7, 7, 0, 0, 0, b"x")


def test_the_decoder_sheds_a_cgroup_but_keeps_some_of_its_execs() -> None:
    shed: Counter[int] = Counter()
    decoded: list[bytes] = []

    def decode(raw: bytes) -> FileEvent:
        decoded.append(raw)
        return FileEvent(type="openat", ts_ns=1)

    shedding = SheddingDecoder(decode, frozenset({FLOOD}), shed,  # type: ignore[arg-type]
                               kept_execs=1000)
    assert shedding(header(FLOOD, records.EVENT_SYSCALL)) is None
    assert shedding(header(FLOOD, records.EVENT_FORK)) is None
    assert shedding(header(FLOOD, records.EVENT_EXEC)) is not None
    assert shedding(header(QUIET, records.EVENT_SYSCALL)) is not None
    assert shed == {FLOOD: 2} and len(decoded) == 2
    kept = sum(shedding(header(FLOOD, records.EVENT_EXEC)) is not None for _ in range(5000))
    assert 999 <= kept <= 2000  # 1000 a second (the loop may cross one second boundary)
