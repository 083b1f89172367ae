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
    assert guard.decide(pressure=False, sent=storm, now=0) == frozenset()  # not behind
    assert guard.decide(pressure=True, sent=storm, now=1) == {FLOOD}
    assert guard.decide(pressure=False, sent=storm, now=1.25) == {FLOOD}  # still flooding
    calm = Counter({FLOOD: 500, QUIET: 50})
    assert guard.decide(pressure=False, sent=calm, now=1.5) == frozenset()


def test_a_container_the_daemon_can_follow_is_let_back_while_it_stays_busy() -> None:
    """One stall must not buy a container blindness while it keeps sending a rate the daemon
    follows: shedding stops after the hold without pressure."""
    guard = FloodGuard(share=0.5, floor=1000, hold_s=2, max_hold_s=8)
    busy = Counter({FLOOD: 6_000, QUIET: 50})  # above the floor, but the daemon keeps up
    assert guard.decide(pressure=True, sent=busy, now=0) == {FLOOD}
    assert guard.decide(pressure=False, sent=busy, now=1.75) == {FLOOD}
    assert guard.decide(pressure=False, sent=busy, now=2.0) == frozenset()  # followed again
    assert guard.decide(pressure=False, sent=busy, now=30) == frozenset()


def test_a_flood_the_daemon_cannot_follow_stays_shed_while_it_lasts() -> None:
    guard = FloodGuard(share=0.5, floor=1000, hold_s=2)
    guard.observe(processed=25_000, cpu_s=0.25)  # 100k events per CPU-second
    guard.observe(processed=25_000, cpu_s=0.25)
    assert 50_000 < guard.capacity < 100_000
    storm = Counter({FLOOD: 90_000, QUIET: 50})  # most of a core: retrying would fall behind
    assert guard.decide(pressure=True, sent=storm, now=0) == {FLOOD}
    assert guard.decide(pressure=False, sent=storm, now=60) == {FLOOD}
    guard.observe(processed=100, cpu_s=0.25)  # too few events to tell: ignored
    assert 50_000 < guard.capacity < 100_000


def test_a_flood_let_back_too_soon_is_retried_less_and_less_often() -> None:
    guard = FloodGuard(share=0.5, floor=1000, hold_s=2, max_hold_s=8)
    guard.capacity = 10_000_000  # an overestimate: every retry falls behind again
    storm = Counter({FLOOD: 90_000, QUIET: 50})
    now, holds = 0.0, []
    guard.decide(pressure=True, sent=storm, now=now)
    for _ in range(5):  # each retry falls behind again at the next check
        holds.append(guard.hold_s)
        now += guard.hold_s
        assert guard.decide(pressure=False, sent=storm, now=now) == frozenset()
        now += 0.25
        assert guard.decide(pressure=True, sent=storm, now=now) == {FLOOD}
    assert holds == [2, 4, 8, 8, 8]
    now += 100  # released, and a new flood long after: the hold starts short again
    guard.decide(pressure=False, sent=Counter({FLOOD: 10}), now=now)
    guard.decide(pressure=True, sent=storm, now=now + 50)
    assert guard.hold_s == 2


def test_no_one_is_shed_when_the_load_is_shared_or_small() -> None:
    guard = FloodGuard(share=0.5, floor=1000)
    assert guard.decide(True, Counter({FLOOD: 40_000, BUSY: 45_000, QUIET: 30_000}), now=0) == set()
    assert guard.decide(True, Counter({FLOOD: 900}), now=0) == set()


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
