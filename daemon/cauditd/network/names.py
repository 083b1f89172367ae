"""Which names each container resolved to which addresses (a flow to 1.2.3.4 then says it is
example.org: net.peer_names), learnt only from answers to the container's own queries.

A DNS message the container sends is a query, whatever its QR bit says; a message it receives
from port 53 teaches names only when it answers a query the container sent (same transport,
client port, server address, id and question), and only once. So a container cannot name its
own peers by sending "responses", and a neighbour cannot by spoofing them without seeing the
query. Everything is bounded per container: pending queries, addresses, names per address.
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from cauditd.events import DnsEvent
from cauditd.network.dns import DnsMessage

MIN_NAME_TTL_S = 300  # keep a name at least this long: short TTLs are re-resolved rarely
QUERY_TIMEOUT_S = 30.0  # a query unanswered this long is forgotten (resolvers give up sooner)
MAX_PENDING = 256  # queries awaiting an answer, per container; the oldest go first
MAX_ADDRESSES = 4096  # answered addresses per container; the least recently answered go first
MAX_NAMES_PER_ADDRESS = 16  # names per address; the one expiring first goes
QueryKey = tuple[str, int, str, int, str]  # l4proto, client port, server, id, qname


@dataclass(slots=True)
class _ContainerNames:
    pending: OrderedDict[QueryKey, float] = field(default_factory=OrderedDict)  # -> deadline
    addresses: OrderedDict[str, dict[str, float]] = field(default_factory=OrderedDict)


class PeerNames:
    """Per container: queries awaiting answers, and the names each answered address has."""

    def __init__(self, *, max_addresses: int = MAX_ADDRESSES, max_pending: int = MAX_PENDING,
                 max_names: int = MAX_NAMES_PER_ADDRESS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._max_addresses = max_addresses
        self._max_pending = max_pending
        self._max_names = max_names
        self._clock = clock
        self._by_container: dict[str, _ContainerNames] = {}
        self.counters = dict.fromkeys(
            ("dns_unmatched", "dns_pending_evicted", "peer_names_evicted"), 0)

    def query(self, container_id: str, event: DnsEvent) -> None:
        """The container sent `event` (egress) to a server: its answer may teach names."""
        state = self._by_container.setdefault(container_id, _ContainerNames())
        pending, now = state.pending, self._clock()
        while pending and next(iter(pending.values())) < now:
            pending.popitem(last=False)
        key = (event.l4proto, event.sport, event.dip, event.dns_id, event.qname)
        pending.pop(key, None)
        pending[key] = now + QUERY_TIMEOUT_S
        if len(pending) > self._max_pending:
            pending.popitem(last=False)
            self.counters["dns_pending_evicted"] += 1

    def answer(self, container_id: str, event: DnsEvent) -> bool:
        """The container received `event` (ingress, from port 53): True, and its addresses
        learnt, when it answers a pending query; False (counted) when nobody asked."""
        state = self._by_container.get(container_id)
        key = (event.l4proto, event.dport, event.sip, event.dns_id, event.qname)
        deadline = state.pending.pop(key, None) if state is not None else None
        if deadline is None or deadline < self._clock():
            self.counters["dns_unmatched"] += 1
            return False
        self.learn(container_id, DnsMessage(
            dns_id=event.dns_id, is_response=True, qname=event.qname, qtype=event.qtype,
            rcode=event.rcode, answers=event.answers, ttls=event.ttls,
            answer_types=tuple(_answer_type(a) for a in event.answers)))
        return True

    def learn(self, container_id: str, message: DnsMessage) -> None:
        """Remember the A/AAAA answers of a response under the queried name and CNAMEs."""
        if not message.is_response or not message.answers:
            return
        names = [message.qname] + [a for a, t in zip(message.answers, message.answer_types,
                                                        strict=True) if t == "CNAME"]
        state = self._by_container.setdefault(container_id, _ContainerNames())
        table, now = state.addresses, self._clock()
        for answer, ttl, rtype in zip(message.answers, message.ttls, message.answer_types,
                                      strict=True):
            if rtype not in ("A", "AAAA"):
                continue
            entry = table.pop(answer, {})
            for name in names:
                entry[name] = now + max(ttl, MIN_NAME_TTL_S)
            self._trim(entry, now)
            table[answer] = entry
            while len(table) > self._max_addresses:
                table.popitem(last=False)

    def _trim(self, entry: dict[str, float], now: float) -> None:
        for name in [n for n, until in entry.items() if until < now]:
            del entry[name]
        while len(entry) > self._max_names:
            del entry[min(entry, key=entry.__getitem__)]
            self.counters["peer_names_evicted"] += 1

    def names(self, container_id: str, address: str) -> tuple[str, ...]:
        """Names the container resolved to `address` that have not expired, sorted."""
        state = self._by_container.get(container_id)
        entry = state.addresses.get(address) if state is not None else None
        if not entry:
            return ()
        now = self._clock()
        return tuple(sorted(name for name, until in entry.items() if until >= now))

    def forget(self, container_id: str) -> None:
        self._by_container.pop(container_id, None)

    def pending(self) -> int:
        return sum(len(s.pending) for s in self._by_container.values())

    def __len__(self) -> int:
        return sum(len(s.addresses) for s in self._by_container.values())


def _answer_type(answer: str) -> str:
    """A/AAAA for an address answer; any name answer (CNAME, and NS/MX/PTR targets) counts as
    an alias, as DnsEvent keeps answers without their types."""
    try:
        return "AAAA" if ipaddress.ip_address(answer).version == 6 else "A"
    except ValueError:
        return "CNAME"
