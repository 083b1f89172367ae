"""Every map of the network monitor that hostile traffic can grow has a cap, and what the cap
turns away is counted: the parser's backlog, the flow log, the history's pending rows."""

from __future__ import annotations

import asyncio
from typing import Any

from cauditd.events import ContainerInfo, Event, FlowEvent
from cauditd.network import dnsparse
from cauditd.network.dnsparse import DnsParser
from cauditd.network.flows import FlowLog, FlowRecord
from cauditd.network.history import MAX_PENDING, NetworkHistory
from cauditd.probes.net_records import DnsCapture, FlowKey, FlowStats


def _flow(port: int) -> FlowEvent:
    return FlowEvent(type="flow_new", ts_ns=port, ifindex=3, direction="egress", l4proto="tcp",
                     sip="10.0.0.2", sport=40000, dip="10.0.0.3", dport=port)


async def test_parser_backlog_is_bounded_in_records_and_bytes() -> None:
    """While the loop does not get to the parsed batches (a flood), submissions beyond the
    backlog are dropped and counted by kind; once the loop catches up, the backlog is empty."""
    got: list[Event] = []
    parser = DnsParser(got.extend)
    parser.start()
    try:
        batch: list[Event] = [_flow(p) for p in range(1000)]
        for _ in range(dnsparse.MAX_BACKLOG // 1000 + 5):  # no await: the loop cannot catch up
            parser.submit(batch)
        big = [DnsCapture(type="dns", ts_ns=0, ifindex=3, direction="egress", l4proto="udp",
                          payload=b"\0" * 4096)] * 10
        assert parser.counters["flows_backlog_dropped"] == 5000
        for _ in range(20):
            await asyncio.sleep(0.05)
        assert parser.backlog == 0 and len(got) == dnsparse.MAX_BACKLOG
        for _ in range(dnsparse.MAX_BACKLOG_BYTES // (4096 * 10) + 3):
            parser.submit(list(big))
        assert parser.counters["dns_backlog_dropped"] == 30  # 3 batches of 10
        assert parser.dropped == 5030
    finally:
        await parser.stop()
    assert parser.backlog == 0 and parser.backlog_bytes == 0


def test_flow_log_evictions_are_counted() -> None:
    log = FlowLog(capacity=100, idle_timeout_ns=1)
    container = ContainerInfo(id="c" * 64)
    for port in range(250):
        key = FlowKey(3, "ingress", "tcp", "10.0.0.9", 40000, "10.0.0.2", port)
        log.opened(FlowRecord(container=container, key=key, first_ns=port))
    assert len(log.records) == 100 and log.evicted == 150


def test_flow_log_keeps_its_oldest_first_order_and_its_active_count() -> None:
    """Records opened, then scraped (some ended, some still active), then pushed out by newer
    ones: the log keeps the newest `capacity` and counts its active records as a walk over it
    would."""
    log = FlowLog(capacity=100, idle_timeout_ns=10)
    container = ContainerInfo(id="c" * 64)
    keys = [FlowKey(3, "ingress", "tcp", "10.0.0.9", 40000 + n, "10.0.0.2", 80)
            for n in range(300)]
    for n, key in enumerate(keys[:150]):
        log.opened(FlowRecord(container=container, key=key, first_ns=n))
    # the kernel's view: every other flow idle since 0 (ended at now 100), the rest busy
    entries = [(key, FlowStats(1, 60, n, 0 if n % 2 else 100, 0, 0x02))
               for n, key in enumerate(keys[50:150], start=50)]
    events, _done = log.scrape(entries, lambda _ifindex: container, lambda _c, _a: (), 100)
    assert len(events) == 50 and log.active() == 50
    assert log.active() == sum(1 for r in log.records.values() if not r.ended)
    log.scrape(entries, lambda _ifindex: container, lambda _c, _a: (), 100)  # ends none twice
    assert log.active() == 50 and log.ended_total == 50
    for n, key in enumerate(keys[150:], start=150):
        log.opened(FlowRecord(container=container, key=key, first_ns=n))
    assert [first for _key, first in log.records] == list(range(200, 300))
    assert log.active() == 100 == sum(1 for r in log.records.values() if not r.ended)
    assert log.evicted == 200


def test_an_aggregate_ends_each_idle_timeout_while_in_use_and_never_closes() -> None:
    """A served aggregate (a client's connections to a port the container serves) busy for
    longer than the idle timeout ends, so flow_end rules see its totals; its FIN (of one of its
    connections) does not end it; a flow of one connection still ends FIN_LINGER after it."""
    timeout = 30 * 10**9
    log = FlowLog(capacity=100, idle_timeout_ns=timeout)
    container = ContainerInfo(id="c" * 64)
    aggregate = FlowKey(3, "ingress", "tcp", "10.0.0.9", 0, "10.0.0.2", 80, served=True)
    single = FlowKey(3, "ingress", "tcp", "10.0.0.9", 40000, "10.0.0.2", 80)

    def scrape(now: int, first: int, last: int) -> list[FlowEvent]:
        fin = 0x11  # FIN, ACK
        entries = [(aggregate, FlowStats(9, 900, first, last, 4, fin, 3)),
                   (single, FlowStats(5, 300, first, last, 0, fin))]
        return log.scrape(entries, lambda _ifindex: container, lambda _c, _a: (), now)[0]

    assert scrape(now=25 * 10**8, first=0, last=10**9) == []  # FIN 1.5 s ago: none yet
    ended = scrape(now=3 * 10**9 + 1, first=0, last=10**9)
    assert [(e.sport, e.connections) for e in ended] == [(40000, 0)]
    ended = scrape(now=timeout, first=0, last=timeout - 1)  # busy, but as old as the timeout
    assert [(e.sport, e.connections, e.packets) for e in ended] == [(0, 3, 9)]


class _StoreThatNeverWrites:
    path = None

    def add_schema(self, _schema: str) -> None:
        pass

    async def run_in_writer(self, _fn: Any) -> None:
        raise RuntimeError("disk full")


async def test_history_pending_rows_are_capped_when_the_store_cannot_write() -> None:
    history = NetworkHistory(_StoreThatNeverWrites(), max_rows=10**7, max_age_s=60)
    doc = {"container_id": "c" * 64, "container_name": "x", "time_ns": 1}
    for _ in range(MAX_PENDING + 10):
        history.add_dns(doc)
    assert history.dropped["net_dns"] == 10
    await history.flush()
    assert history.write_errors == 1
