"""GET /v1/flows and /v1/dns: the filters, answered from memory (the flow and DNS logs) and,
when a request reaches back past what memory holds, from the database (NetworkHistory)."""

from __future__ import annotations

import ipaddress
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from cauditd.events import _MONO_TO_WALL_NS
from cauditd.network.flows import FlowLog, FlowRecord
from cauditd.network.history import NetworkHistory


class NetworkQueries:
    """Reads of the monitor's flow log, DNS log and history (on the loop)."""

    def __init__(self, flows: FlowLog, dns_log: deque[dict[str, Any]],
                 history: NetworkHistory | None) -> None:
        self._flows = flows
        self._dns_log = dns_log
        self._history = history
        self.started_wall_ns = time.time_ns()  # memory holds nothing older

    def flows(self, filters: Mapping[str, Any] | Any = None) -> list[dict[str, Any]]:
        """Flows, newest first: filters container (id, short id or name), since (wall ns),
        peer (address or CIDR), port (either end), name (a peer name or a parent domain)."""
        f = QueryFilter.of(filters)
        found = [r.to_dict(_MONO_TO_WALL_NS) for r in self._flows.query(f.flow_matches, f.limit)]
        oldest = self._flows.oldest_ns()
        horizon = max(self.started_wall_ns,
                      oldest + _MONO_TO_WALL_NS if oldest is not None else 0)
        older = self._from_history("net_flows", f, f.flow_doc_matches, horizon, len(found))
        seen = {_flow_identity(d) for d in found}
        found += [d for d in older if _flow_identity(d) not in seen]
        found.sort(key=lambda d: d["first_ns"], reverse=True)
        return found[: f.limit]

    def dns(self, filters: Mapping[str, Any] | Any = None) -> list[dict[str, Any]]:
        """DNS queries and responses, newest first, with the same filters as flows()."""
        f = QueryFilter.of(filters)
        found = [d for d in reversed(self._dns_log) if f.dns_matches(d)][: f.limit]
        full = len(self._dns_log) == self._dns_log.maxlen
        horizon = max(self.started_wall_ns, self._dns_log[0]["time_ns"] if full else 0)
        found += self._from_history("net_dns", f, f.dns_matches, horizon, len(found))
        return found[: f.limit]

    def _from_history(self, table: str, f: QueryFilter,
                      match: Callable[[dict[str, Any]], bool], horizon_ns: int,
                      have: int) -> list[dict[str, Any]]:
        """Records older than what memory holds (`horizon_ns`): from the database, when the
        request reaches back past it and memory did not fill the limit."""
        if self._history is None or have >= f.limit or \
                (f.since_ns is not None and f.since_ns >= horizon_ns):
            return []
        return self._history.query(table, match, limit=f.limit - have, since_ns=f.since_ns,
                                   before_ns=horizon_ns)


def _flow_identity(d: dict[str, Any]) -> tuple[Any, ...]:
    return (d["container_id"], d["direction"], d["proto"], d["sip"], d["sport"], d["dip"],
            d["dport"], d["first_ns"])


class QueryFilter:
    """The filters of /v1/flows and /v1/dns, from a dict or the API's NetworkFilter."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self.container = values.get("container")
        since = values.get("since_ns", values.get("since"))
        self.since_ns = int(since) if since is not None else None
        peer = values.get("peer")
        self.peer = ipaddress.ip_network(str(peer), strict=False) if peer else None
        port = values.get("port")
        self.port = int(port) if port is not None else None
        name = values.get("name")
        self.name = str(name).rstrip(".").lower() if name else None
        self.limit = int(values.get("limit") or 100)

    @classmethod
    def of(cls, filters: Mapping[str, Any] | Any) -> QueryFilter:
        if filters is None:
            return cls({})
        if isinstance(filters, Mapping):
            return cls(filters)
        names = ("container", "since_ns", "peer", "port", "name", "limit")
        return cls({n: getattr(filters, n) for n in names if getattr(filters, n, None) is not None})

    def _container_ok(self, full_id: str, name: str) -> bool:
        c = self.container
        return c is None or c == name or (len(c) >= 4 and full_id.startswith(c))

    def _name_ok(self, names: list[str] | tuple[str, ...]) -> bool:
        n = self.name
        return n is None or any(x == n or x.endswith("." + n) for x in names)

    def _peer_ok(self, address: str) -> bool:
        if self.peer is None:
            return True
        try:
            return ipaddress.ip_address(address) in self.peer
        except ValueError:
            return False

    def flow_matches(self, r: FlowRecord) -> bool:
        k = r.key
        return (self._container_ok(r.container.id, r.container.name)
                and (self.since_ns is None or (r.last_ns or r.first_ns) + _MONO_TO_WALL_NS
                     >= self.since_ns)
                and self._peer_ok(k.peer)
                and (self.port is None or self.port in (k.sport, k.dport))
                and self._name_ok(r.peer_names))

    def flow_doc_matches(self, d: dict[str, Any]) -> bool:
        """flow_matches for a flow as to_dict() wrote it (from the database)."""
        return (self._container_ok(d["container_id"], d["container_name"])
                and (self.since_ns is None or d["last_ns"] >= self.since_ns)
                and self._peer_ok(d["peer"])
                and (self.port is None or self.port in (d["sport"], d["dport"]))
                and self._name_ok(d["peer_names"]))

    def dns_matches(self, d: dict[str, Any]) -> bool:
        return (self._container_ok(d["container_id"], d["container_name"])
                and (self.since_ns is None or d["time_ns"] >= self.since_ns)
                and (self.peer is None or self._peer_ok(d["server"])
                     or any(self._peer_ok(a) for a in d["answers"]))
                and (self.port is None or self.port == 53)
                and self._name_ok([d["name"], *d["answers"]]))
