"""PollInterval: the readers' drain timer backs off while idle, gathers a trickle of records,
and drains again at once while the producer is busy."""

from __future__ import annotations

import pytest

from cauditd.probes.ringbuf import PollInterval


@pytest.mark.parametrize(
    ("found", "waits"),
    [
        ([500, 64, 99], [0, 0, 0]),  # busy: drained again at once
        ([5, 3, 1, 500], [0.008, 0.008, 0.008, 0]),  # a trickle is gathered
        ([0, 0, 0, 0, 0, 0, 0], [0.002, 0.004, 0.008, 0.016, 0.02, 0.02, 0.02]),
        ([0, 0, 0, 0, 7, 0, 0], [0.002, 0.004, 0.008, 0.016, 0.008, 0.002, 0.004]),
    ],
)
def test_waits_double_while_idle_up_to_the_ceiling_and_reset_on_records(
    found: list[int], waits: list[float]
) -> None:
    poll = PollInterval(0.002, ceiling=0.02, grace=0.0, gather=0.008, sparse=64)
    assert [poll.after(n) for n in found] == pytest.approx(waits)


def test_gathering_stays_between_the_base_and_the_ceiling() -> None:
    assert PollInterval(0.002).after(1) == pytest.approx(0.008)  # GATHER_FACTOR intervals
    assert PollInterval(0.002, ceiling=0.005, gather=0.008).after(1) == 0.005
    assert PollInterval(0.01, ceiling=0.02, gather=0.008).after(1) == 0.01


def test_the_base_interval_holds_through_the_grace_period() -> None:
    poll = PollInterval(0.002, ceiling=0.02, grace=0.01)
    waits = [poll.after(0) for _ in range(8)]
    assert waits == pytest.approx([0.002] * 5 + [0.002, 0.004, 0.008])
    assert poll.after(100) == 0
    assert [poll.after(0) for _ in range(6)] == pytest.approx([0.002] * 6)


def test_a_base_above_the_ceiling_is_kept() -> None:
    poll = PollInterval(0.2, ceiling=0.02)
    assert [poll.after(0), poll.after(0), poll.after(1)] == [0.2, 0.2, 0.2]
    assert poll.after(1000) == 0
