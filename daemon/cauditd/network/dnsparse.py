"""The DNS parsing stage between the network ring reader and the loop: batches whose DnsCapture
records a thread of its own parses with scapy (identical payloads once), handed on in order.

scapy costs ~0.1-1 ms per distinct message, far more than the reader may spend per record, so
parsing runs here and the backlog waits in memory. The backlog is every record handed to the
parser and not yet processed on the loop (flows too: the loop may be the slow one), bounded in
records and in DNS payload bytes; a batch that does not fit is dropped and counted, by kind.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections import OrderedDict
from collections.abc import Callable

from cauditd.events import DnsEvent, Event
from cauditd.network import dns
from cauditd.probes.net_records import DnsCapture

log = logging.getLogger(__name__)

PARSE_CACHE_SIZE = 4096  # DNS payloads (less their id) already parsed
MAX_BACKLOG = 50_000  # records handed on and not processed on the loop yet
MAX_BACKLOG_BYTES = 16 << 20  # DNS payload bytes among them
EventSink = Callable[[list[Event]], None]


class DnsParser:
    """`submit(batch)` on the loop; `sink` gets each batch on the loop, in order, with every
    DnsCapture replaced by its DnsEvent (or left out: malformed, or dropped)."""

    def __init__(self, sink: EventSink) -> None:
        self._sink = sink
        self._queue: queue.SimpleQueue[list[Event] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._cache: OrderedDict[bytes, dns.DnsMessage | None] = OrderedDict()
        self.backlog = 0  # loop-only: records submitted and not processed yet
        self.backlog_bytes = 0
        self.counters: dict[str, int] = dict.fromkeys(
            ("dns_malformed", "dns_parsed", "dns_parse_cached", "dns_backlog_dropped",
             "flows_backlog_dropped", "dns_odd_qr"), 0)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._main, args=(loop,), name="net-dns-parse",
                                        daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        """Parse what is queued, hand it to the sink, and end the thread."""
        if self._thread is None:
            return
        self._queue.put(None)
        await asyncio.to_thread(self._thread.join, 30)
        await asyncio.sleep(0)  # the thread's last batch runs on the loop
        self._thread = None

    @property
    def dropped(self) -> int:
        """Records dropped because the backlog was full, so far."""
        return self.counters["dns_backlog_dropped"] + self.counters["flows_backlog_dropped"]

    def submit(self, batch: list[Event]) -> None:
        """A batch from the reader (on the loop): queue it for the parser thread, in order, or
        drop it (counted) when the backlog is full."""
        if not batch:
            return
        captures = [e.payload for e in batch if isinstance(e, DnsCapture)]
        size = sum(map(len, captures))
        if self.backlog + len(batch) > MAX_BACKLOG or \
                self.backlog_bytes + size > MAX_BACKLOG_BYTES:
            self.counters["dns_backlog_dropped"] += len(captures)
            self.counters["flows_backlog_dropped"] += len(batch) - len(captures)
            return
        if self._thread is None:  # not started (tests driving the monitor): parse here
            self._sink(self.parse_batch(batch))
            return
        self.backlog += len(batch)
        self.backlog_bytes += size
        self._queue.put(batch)

    def _main(self, loop: asyncio.AbstractEventLoop) -> None:
        while (batch := self._queue.get()) is not None:
            try:
                parsed = self.parse_batch(batch)
            except Exception:
                log.exception("network: parsing a batch of %d records failed", len(batch))
                parsed = []
            try:
                loop.call_soon_threadsafe(self._hand_on, batch, parsed)
            except RuntimeError:  # loop closed during shutdown
                return

    def _hand_on(self, batch: list[Event], parsed: list[Event]) -> None:
        """On the loop: the sink takes a parsed batch; its records leave the backlog."""
        try:
            self._sink(parsed)
        finally:
            self.backlog -= len(batch)
            self.backlog_bytes -= sum(len(e.payload) for e in batch if isinstance(e, DnsCapture))

    def parse_batch(self, batch: list[Event]) -> list[Event]:
        out: list[Event] = []
        for event in batch:
            if not isinstance(event, DnsCapture):
                out.append(event)
            elif (parsed := self.parse(event)) is not None:
                out.append(parsed)
        return out

    def parse(self, capture: DnsCapture) -> DnsEvent | None:
        """Parse one copied DNS payload; a payload seen before (less its id) is not re-parsed.

        The probe copies only what the container sends to port 53 and receives from it, so
        the direction says what a message is: one the container sends is a query whatever its
        QR bit (the query rules see it), one it receives must be a response (else dropped).
        Both odd cases are counted (dns_odd_qr)."""
        tcp = capture.l4proto == "tcp"
        payload = capture.payload
        head = 2 if tcp else 0
        key = (b"T" if tcp else b"U") + payload[:head] + payload[head + 2:]
        cache = self._cache
        if key in cache:
            msg = cache[key]
            self.counters["dns_parse_cached"] += 1
        else:
            try:
                msg = dns.parse(payload, tcp=tcp)
            except dns.MalformedDns:
                msg = None
            self.counters["dns_parsed"] += 1
            cache[key] = msg
            if len(cache) > PARSE_CACHE_SIZE:
                cache.popitem(last=False)
        if msg is None:
            self.counters["dns_malformed"] += 1
            return None
        query = capture.direction == "egress"
        if msg.is_response == query:  # QR contradicts the direction
            self.counters["dns_odd_qr"] += 1
            if not query:
                return None  # a "query" from a server's port 53 answers nothing
        dns_id = int.from_bytes(payload[head:head + 2], "big")
        return DnsEvent(
            type="dns_query" if query else "dns_response", ts_ns=capture.ts_ns,
            ifindex=capture.ifindex, direction=capture.direction, l4proto=capture.l4proto,
            sip=capture.sip, sport=capture.sport, dip=capture.dip, dport=capture.dport,
            qname=msg.qname, qtype=msg.qtype, rcode="" if query else msg.rcode,
            dns_id=dns_id, answers=msg.answers, ttls=msg.ttls)
