"""Which ports each container serves: its listening sockets during a learning period after it
was attached (the baseline), then the ports it took connections on; for net.port_first_seen.

A container's listening sockets are read from /proc/<pid>/net/{tcp,tcp6,udp,udp6}, which list
the sockets of the network namespace of <pid>: the container's, not the host's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from math import inf

TCP_LISTEN = "0A"
UDP_UNCONNECTED = "07"  # a bound UDP socket with no peer: the UDP way to "listen"
SOCKET_TABLES = (("tcp", TCP_LISTEN), ("tcp6", TCP_LISTEN), ("udp", UDP_UNCONNECTED),
                 ("udp6", UDP_UNCONNECTED))
MAX_PORTS = 4096  # per container; a container serving more ports than this is not profiled
# Reading /proc/<pid>/net/tcp walks the kernel's whole TCP hash (~4.6 ms even with no sockets):
# sampled at every 0.5 s poll it cost ~1.8% of a core per learning container.
SAMPLE_INTERVAL_S = 5.0


def listening_ports(pid: int, *, any_state: bool = False) -> dict[str, set[int]]:
    """Local ports in the listening state in the netns of `pid`, by protocol ("tcp", "udp");
    with `any_state`, the local ports of every socket (a connection just accepted counts even
    when its listener is closed already, as `nc -l` does)."""
    ports: dict[str, set[int]] = {"tcp": set(), "udp": set()}
    for table, state in SOCKET_TABLES:
        try:
            with open(f"/proc/{pid}/net/{table}") as f:
                next(f, None)  # the header
                for line in f:
                    parts = line.split(None, 4)
                    if len(parts) > 3 and (any_state or parts[3] == state):
                        ports[table[:3]].add(int(parts[1].rsplit(":", 1)[1], 16))
        except OSError:
            continue  # the process went, or no IPv6
    return ports


@dataclass
class _Profile:
    pid: int
    learn_until: float
    next_sample: float = 0.0
    known: dict[str, set[int]] = field(default_factory=lambda: {"tcp": set(), "udp": set()})


class ListenPorts:
    """Per container: the ports it is known to serve. Call from one thread (the loop)."""

    def __init__(self, learning_s: float, *, clock: Callable[[], float] = time.monotonic,
                 read_ports: Callable[..., dict[str, set[int]]] = listening_ports) -> None:
        self._learning_s = learning_s
        self._clock = clock
        self._read_ports = read_ports
        self._profiles: dict[str, _Profile] = {}

    def track(self, container_id: str, pid: int) -> None:
        """Start learning a container (newly attached, or restarted with a new pid)."""
        self._profiles[container_id] = _Profile(pid, self._clock() + self._learning_s)
        self.sample(container_id)

    def forget(self, container_id: str) -> None:
        self._profiles.pop(container_id, None)

    def sample_learning(self) -> None:
        """Add the listening ports of the containers still learning, each every
        SAMPLE_INTERVAL_S, with one last sample at or after the end of its learning period."""
        now = self._clock()
        for container_id, profile in list(self._profiles.items()):
            if now >= profile.next_sample:
                self.sample(container_id)

    def sample(self, container_id: str) -> None:
        profile = self._profiles.get(container_id)
        if profile is None:
            return
        now = self._clock()
        learning = now < profile.learn_until
        profile.next_sample = min(now + SAMPLE_INTERVAL_S, profile.learn_until) if learning else inf
        for proto, ports in self._read_ports(profile.pid).items():
            known = profile.known[proto]
            if len(known) < MAX_PORTS:
                known.update(ports)

    def first_seen(self, container_id: str, proto: str, port: int,
                   answered: Callable[[], bool] = lambda: False) -> bool:
        """An inbound flow to `port`: True if the container serves it (`answered`: it accepted
        the flow, a SYN-ACK or a UDP reply; or a socket of it holds the port now), did not
        listen on it while learning, and never took a connection on it before (the port
        becomes known)."""
        profile = self._profiles.get(container_id)
        if profile is None or proto not in profile.known:
            return False
        known = profile.known[proto]
        if port in known or len(known) >= MAX_PORTS:
            return False
        if self._clock() <= profile.learn_until:
            known.add(port)  # still learning: the port is part of the baseline
            return False
        # A short connection is over (its sockets gone) before the flow_new record is read,
        # so the kernel's answer flow is checked first; /proc covers a flow not answered yet.
        if not answered() and port not in self._read_ports(profile.pid, any_state=True)[proto]:
            return False  # no socket on it: a probe of a closed port (the scan rules' business)
        known.add(port)
        return True

    def __len__(self) -> int:
        return len(self._profiles)
