"""ListenPorts (net.port_first_seen) on a fake clock and fake /proc reads, and the flow key
the monitor looks the answer flow up with."""

from __future__ import annotations

import pytest

from cauditd.network.listen import ListenPorts, listening_ports
from cauditd.probes.net_records import FLOW_KEY, FlowKey

CID = "c" * 64


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _profile(held: set[int]) -> tuple[ListenPorts, Clock]:
    """A container that listened on tcp/8080 while learning and holds `held` afterwards."""
    clock = Clock()
    reads = [{"tcp": {8080}, "udp": set()}]

    def read(pid: int, *, any_state: bool = False) -> dict[str, set[int]]:
        return reads[0] if not any_state else {"tcp": {8080, *held}, "udp": set()}

    ports = ListenPorts(3, clock=clock, read_ports=read)
    ports.track(CID, 4242)
    clock.now += 4  # learning over
    return ports, clock


@pytest.mark.parametrize(("port", "held", "answered", "expected"), [
    (8080, set(), True, False),  # in the baseline
    (7000, {7000}, False, True),  # a socket holds it now
    (7000, set(), True, True),  # the connection is over, but the container had answered it
    (7000, set(), False, False),  # closed port: neither answered nor held (a probe)
])
def test_first_seen(port: int, held: set[int], answered: bool, expected: bool) -> None:
    ports, _clock = _profile(held)
    assert ports.first_seen(CID, "tcp", port, lambda: answered) is expected
    assert ports.first_seen(CID, "tcp", port, lambda: answered) is False  # once per port


def test_learning_period_adds_inbound_ports_to_baseline() -> None:
    ports, clock = _profile(set())
    clock.now -= 4  # back inside the learning period
    assert ports.first_seen(CID, "tcp", 7000, lambda: True) is False
    clock.now += 4
    assert ports.first_seen(CID, "tcp", 7000, lambda: True) is False


def test_unknown_container_is_never_first_seen() -> None:
    ports, _clock = _profile({7000})
    assert ports.first_seen("d" * 64, "tcp", 7000, lambda: True) is False


def test_listening_ports_of_a_gone_pid_are_empty() -> None:
    assert listening_ports(2**22 + 1) == {"tcp": set(), "udp": set()}


@pytest.mark.parametrize(("sip", "dip"), [("10.0.0.2", "10.0.0.3"), ("fd00::2", "fd00::3")])
def test_flow_key_packs_as_the_kernel_keys_it(sip: str, dip: str) -> None:
    key = FlowKey(7, "ingress", "tcp", sip, 40000, dip, 7000)
    assert FlowKey.unpack(key.pack()) == key
    assert len(key.pack()) == FLOW_KEY.size
    assert key.reverse() == FlowKey(7, "egress", "tcp", dip, 7000, sip, 40000)
    assert key.reverse().reverse() == key


def test_learning_samples_every_interval_then_once_at_the_end() -> None:
    """/proc/<pid>/net/tcp costs milliseconds per read: not at every 0.5 s poll."""
    clock = Clock()
    reads: list[float] = []

    def read(pid: int, *, any_state: bool = False) -> dict[str, set[int]]:
        reads.append(clock.now)
        return {"tcp": {8080}, "udp": set()}

    ports = ListenPorts(60, clock=clock, read_ports=read)
    ports.track(CID, 4242)
    for _ in range(160):  # 80 s of polls every 0.5 s
        clock.now += 0.5
        ports.sample_learning()
    offsets = [t - 100.0 for t in reads]
    assert offsets == [0.0, *(5.0 * i for i in range(1, 13))]  # 0, 5, ..., 60, then never
