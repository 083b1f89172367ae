"""Which ports each container serves: its listening sockets during a learning period after it
was attached (the baseline), then the ports it took connections on; for net.port_first_seen.

A learning sample asks the kernel's sock_diag, in the container's netns, for its listening
sockets alone (read_listening: the listening hash only; 1.8 ms of CPU a read here, thread and
netlink parsing included). Judging a flow to a port it did not listen on needs every socket's
port (read_ports: /proc/<pid>/net/{tcp,tcp6,udp,udp6}, which list the sockets of the netns of
<pid>, walking the kernel's whole socket hash: 7.2 ms a read here, ~3.5 ms per TCP table).
Neither runs on the event loop: ListenPorts is the loop's state and says when a read is needed;
network.inbound does the reads in a worker thread.
"""

from __future__ import annotations

import itertools
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from math import inf

from pyroute2.netlink.exceptions import NetlinkError

from cauditd.network import netns

TCP_LISTEN = "0A"
UDP_UNCONNECTED = "07"  # a bound UDP socket with no peer: the UDP way to "listen"
SOCKET_TABLES = (("tcp", TCP_LISTEN), ("tcp6", TCP_LISTEN), ("udp", UDP_UNCONNECTED),
                 ("udp6", UDP_UNCONNECTED))
MAX_PORTS = 4096  # per container; a container serving more ports than this is not profiled
# Reading /proc/<pid>/net/tcp walks the kernel's whole TCP hash (~4.6 ms even with no sockets):
# sampled at every 0.5 s poll it cost ~1.8% of a core per learning container (samples ask
# sock_diag now, at a fraction of that, and keep the interval).
SAMPLE_INTERVAL_S = 5.0
Ports = dict[str, set[int]]  # "tcp"/"udp" -> port numbers


@dataclass(frozen=True, slots=True)
class SocketPorts:
    """A container's local ports at one moment: listening ones, and those of any socket (a
    connection just accepted counts even when its listener is closed already, as `nc -l`)."""

    listening: Ports
    held: Ports


def read_ports(pid: int) -> SocketPorts:
    """The local ports of the sockets in the netns of `pid` (empty when it is gone). Blocks for
    milliseconds: call it off the event loop."""
    listening: Ports = {"tcp": set(), "udp": set()}
    held: Ports = {"tcp": set(), "udp": set()}
    for table, state in SOCKET_TABLES:
        proto = table[:3]
        try:
            with open(f"/proc/{pid}/net/{table}") as f:
                next(f, None)  # the header
                for line in f:
                    parts = line.split(None, 4)
                    if len(parts) <= 3:
                        continue
                    port = int(parts[1].rsplit(":", 1)[1], 16)
                    held[proto].add(port)
                    if parts[3] == state:
                        listening[proto].add(port)
        except (OSError, ValueError):
            continue  # the process went, or no IPv6
    return SocketPorts(listening, held)


def read_listening(pid: int) -> SocketPorts:
    """The listening ports of the netns of `pid` alone (`held` is empty), asked of the kernel's
    sock_diag with a state filter: TCP LISTEN walks the listening hash only, where
    /proc/<pid>/net/tcp walks every established socket of the host too (~4 ms per table on a
    24 GiB host, at every learning sample of every container). Blocks: call it off the loop."""
    from pyroute2 import DiagSocket  # the sock_diag netlink family

    def ask() -> Ports:
        found: Ports = {"tcp": set(), "udp": set()}
        with DiagSocket() as diag:
            diag.bind()
            for family, (proto, number, states) in itertools.product(
                    (socket.AF_INET, socket.AF_INET6), _DIAG_QUERIES):
                for answer in diag.get_sock_stats(family=family, protocol=number,
                                                  states=states):
                    found[proto].add(int(answer["idiag_sport"]))
        return found

    try:
        listening = netns.run_in(pid, ask)
    except (OSError, NetlinkError):  # TimeoutError is an OSError
        listening = {"tcp": set(), "udp": set()}  # the process went, or its netns is stuck
    return SocketPorts(listening, {"tcp": set(), "udp": set()})


# (proto, IPPROTO_*, sock_diag state mask) of what read_listening asks: TCP in LISTEN, UDP
# unconnected (TCP_CLOSE, 7, as /proc shows "07"): the states of SOCKET_TABLES.
_DIAG_QUERIES = (("tcp", socket.IPPROTO_TCP, 1 << int(TCP_LISTEN, 16)),
                 ("udp", socket.IPPROTO_UDP, 1 << int(UDP_UNCONNECTED, 16)))


@dataclass
class _Profile:
    pid: int
    learn_until: float
    next_sample: float = 0.0
    known: Ports = field(default_factory=lambda: {"tcp": set(), "udp": set()})


class ListenPorts:
    """Per container: the ports it is known to serve. Loop state only: it never reads /proc,
    it says when a read is due (`due_samples`, `judge` returning None) and takes the result."""

    def __init__(self, learning_s: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._learning_s = learning_s
        self._clock = clock
        self._profiles: dict[str, _Profile] = {}

    def track(self, container_id: str, pid: int) -> None:
        """Start learning a container (newly attached, or restarted with a new pid); its first
        sample is due at once."""
        self._profiles[container_id] = _Profile(pid, self._clock() + self._learning_s)

    def forget(self, container_id: str) -> None:
        self._profiles.pop(container_id, None)

    def pid(self, container_id: str) -> int:
        profile = self._profiles.get(container_id)
        return profile.pid if profile is not None else 0

    def due_samples(self) -> list[tuple[str, int]]:
        """(container id, pid) of the containers still learning whose sample is due: every
        SAMPLE_INTERVAL_S, and one last at or after the end of the learning period. Each is
        then not due again until its next interval."""
        now = self._clock()
        due = []
        for container_id, profile in self._profiles.items():
            if now < profile.next_sample:
                continue
            learning = now < profile.learn_until
            profile.next_sample = (min(now + SAMPLE_INTERVAL_S, profile.learn_until)
                                   if learning else inf)
            due.append((container_id, profile.pid))
        return due

    def add_sample(self, container_id: str, pid: int, ports: SocketPorts) -> None:
        """The listening ports a due sample found join the baseline."""
        profile = self._profiles.get(container_id)
        if profile is None or profile.pid != pid:
            return  # forgotten, or restarted since the read was asked for
        for proto, found in ports.listening.items():
            known = profile.known[proto]
            if len(known) < MAX_PORTS:
                known.update(found)

    def judge(self, container_id: str, proto: str, port: int, answered: bool) -> bool | None:
        """An inbound flow to `port`: True if it is the first to a port the container serves
        (`answered`: the kernel saw it accept the flow) that it did not listen on while
        learning (the port becomes known); False if not; None when only a look at the
        container's sockets can tell (judge_held then)."""
        profile = self._profiles.get(container_id)
        if profile is None or proto not in profile.known:
            return False
        known = profile.known[proto]
        if port in known or len(known) >= MAX_PORTS:
            return False
        if self._clock() <= profile.learn_until:
            known.add(port)  # still learning: the port is part of the baseline
            return False
        if not answered:
            return None
        known.add(port)
        return True

    def judge_held(self, container_id: str, proto: str, port: int, ports: SocketPorts) -> bool:
        """judge() for a flow the kernel had not seen answered, once the container's sockets
        were read: a socket holding the port means it serves it (a probe of a closed port is
        the scan rules' business)."""
        profile = self._profiles.get(container_id)
        if profile is None or proto not in profile.known:
            return False
        known = profile.known[proto]
        if port in known or len(known) >= MAX_PORTS or port not in ports.held.get(proto, ()):
            return False
        known.add(port)
        return True

    def __len__(self) -> int:
        return len(self._profiles)
