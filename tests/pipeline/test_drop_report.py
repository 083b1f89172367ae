"""A drop finding says how many events were lost to each cause, and adds to itself within a
minute: the network's DNS parser backlog is not called a full ring buffer."""

from __future__ import annotations

from cauditd.config import RulesConfig
from cauditd.detection import BACKLOG, DROP_RULE, RING_FULL, SHED, Detector
from cauditd.store import FindingFilter, FindingStore


async def test_drops_are_told_by_cause_and_add_up(store: FindingStore) -> None:
    detector = Detector(RulesConfig(paths=[]), store)
    detector.report_drops("network", {RING_FULL: 3, BACKLOG: 2}, [])
    detector.report_drops("syscall", {RING_FULL: 0, SHED: 7}, [])
    detector.report_drops("network", {RING_FULL: 0, BACKLOG: 4}, [])
    await store.flush()
    found, _ = await store.query(FindingFilter(rules=(DROP_RULE,)))
    by_probe = {f.output_fields["probe"]: f for f in found}
    network, syscall = by_probe["network"], by_probe["syscall"]
    assert "lost 5 events (3 as the ring buffer was full, 2 as the DNS parser's backlog was " \
           "full;" in network.output
    assert network.output_fields["evt.lost"] == 9 and network.count == 2
    assert "lost 7 events (7 shed from the flooding container;" in syscall.output
    assert "ring buffer" not in syscall.output
