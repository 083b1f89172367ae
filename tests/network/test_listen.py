"""ListenPorts and InboundPorts (net.port_first_seen) on a fake clock and fake socket reads, and
the flow key the monitor looks the answer flow up with."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading

import pytest

from cauditd.events import ContainerInfo, Event, FlowEvent
from cauditd.network import inbound, listen
from cauditd.network.inbound import InboundPorts
from cauditd.network.listen import ListenPorts, SocketPorts, read_ports
from cauditd.probes.net_records import FLOW_KEY, FlowKey

CID = "c" * 64


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def ports(listening: set[int], held: set[int] | None = None) -> SocketPorts:
    return SocketPorts({"tcp": set(listening), "udp": set()},
                       {"tcp": set(listening) | (held or set()), "udp": set()})


def _profile() -> tuple[ListenPorts, Clock]:
    """A container that listened on tcp/8080 while learning; learning is over."""
    clock = Clock()
    profile = ListenPorts(3, clock=clock)
    profile.track(CID, 4242)
    assert profile.due_samples() == [(CID, 4242)]
    profile.add_sample(CID, 4242, ports({8080}))
    clock.now += 4
    return profile, clock


@pytest.mark.parametrize(("port", "answered", "held", "expected"), [
    (8080, True, set(), False),  # in the baseline
    (7000, True, set(), True),  # the connection is over, but the container had answered it
    (7000, False, {7000}, True),  # not answered yet: a socket holds it now
    (7000, False, set(), False),  # closed port: neither answered nor held (a probe)
])
def test_judge(port: int, answered: bool, held: set[int], expected: bool) -> None:
    profile, _clock = _profile()
    verdict = profile.judge(CID, "tcp", port, answered)
    if verdict is None:  # only a look at the sockets can tell
        assert not answered
        verdict = profile.judge_held(CID, "tcp", port, ports(set(), held))
    assert verdict is expected
    assert profile.judge(CID, "tcp", port, answered) in (False, None)  # once per port
    assert profile.judge_held(CID, "tcp", port, ports(set(), held)) is False


def test_learning_period_adds_inbound_ports_to_baseline() -> None:
    profile, clock = _profile()
    clock.now -= 4  # back inside the learning period
    assert profile.judge(CID, "tcp", 7000, True) is False
    clock.now += 4
    assert profile.judge(CID, "tcp", 7000, True) is False


def test_unknown_container_is_never_first_seen() -> None:
    profile, _clock = _profile()
    assert profile.judge("d" * 64, "tcp", 7000, True) is False
    assert profile.judge_held("d" * 64, "tcp", 7000, ports({7000})) is False


def test_sample_of_a_restarted_container_is_ignored() -> None:
    profile, _clock = _profile()
    profile.track(CID, 5151)  # restarted: learning again, with a new pid
    profile.add_sample(CID, 4242, ports({9999}))  # a read asked for under the old pid
    profile.add_sample(CID, 5151, ports({7000}))
    assert profile.judge(CID, "tcp", 9999, True) is False  # learning: joins the baseline
    assert profile.judge_held(CID, "tcp", 7000, ports(set(), {7000})) is False  # known


def test_ports_of_a_gone_pid_are_empty() -> None:
    assert read_ports(2**22 + 1) == SocketPorts({"tcp": set(), "udp": set()},
                                                {"tcp": set(), "udp": set()})


NETNS_SERVER = """
import os, socket, time
os.system("ip link set lo up")
t = socket.socket(); t.bind(("0.0.0.0", 0)); t.listen()
t6 = socket.socket(socket.AF_INET6); t6.bind(("::", 0)); t6.listen()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", 0))
c = socket.create_connection(("127.0.0.1", t.getsockname()[1])); a, _ = t.accept()
print(t.getsockname()[1], t6.getsockname()[1], u.getsockname()[1], c.getsockname()[1],
      flush=True)
time.sleep(60)
"""


@pytest.mark.usefixtures("ebpf")  # root, for a network namespace of the test's own
def test_listening_ports_of_another_netns_by_sock_diag() -> None:
    """read_listening asks the kernel for one netns's listening sockets alone: the TCP
    listeners (v4 and v6) and the bound UDP socket, not a connected socket's port, and the
    same listening ports as the /proc tables show."""
    server = subprocess.Popen(["unshare", "-n", sys.executable, "-c", NETNS_SERVER],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        tcp4, tcp6, udp, client = map(int, server.stdout.readline().split())
        found = listen.read_listening(server.pid)
        assert found.listening == {"tcp": {tcp4, tcp6}, "udp": {udp}}
        assert client not in found.listening["tcp"] and found.held == {"tcp": set(), "udp": set()}
        assert read_ports(server.pid).listening == found.listening
        assert client in read_ports(server.pid).held["tcp"]
    finally:
        server.kill()
        server.wait()
    assert listen.read_listening(server.pid).listening == {"tcp": set(), "udp": set()}  # gone


def test_ports_of_this_process_netns() -> None:
    import socket

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        found = read_ports(threading.get_native_id())
    assert port in found.listening["tcp"] and port in found.held["tcp"]


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
    profile = ListenPorts(60, clock=clock)
    profile.track(CID, 4242)
    due = [0.0] if profile.due_samples() else []
    for _ in range(160):  # 80 s of polls every 0.5 s
        clock.now += 0.5
        if profile.due_samples():
            due.append(clock.now - 100.0)
    assert due == [0.0, *(5.0 * i for i in range(1, 13))]  # 0, 5, ..., 60, then never


def _flow(port: int) -> FlowEvent:
    return FlowEvent(type="flow_new", ts_ns=0, container=ContainerInfo(id=CID), l4proto="tcp",
                     direction="ingress", sip="10.0.0.9", sport=40000, dip="10.0.0.2",
                     dport=port)


async def test_unanswered_flows_wait_for_one_read_off_the_loop(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A flood of unanswered inbound flows: the sockets are read in a worker thread, once for
    the whole batch (not once per flow), held flows are bounded, and each is judged."""
    loop_thread = threading.current_thread()
    reads: list[threading.Thread] = []

    def read(pid: int) -> SocketPorts:
        reads.append(threading.current_thread())
        return ports({8080}, {7001})

    monkeypatch.setattr(listen, "read_ports", read)
    delivered: list[Event] = []
    profile = ListenPorts(0)
    checks = InboundPorts(profile, delivered.extend)
    checks.start()
    try:
        checks.track(CID, 4242)
        flows = [_flow(7000 + i) for i in range(inbound.MAX_HELD + 36)]
        held = [checks.judge(f, lambda: False) for f in flows]
        assert held == [True] * inbound.MAX_HELD + [False] * 36
        assert checks.counters["inbound_checks_skipped"] == 36
        for _ in range(300):
            if len(delivered) == inbound.MAX_HELD:
                break
            await asyncio.sleep(0.01)
        assert [f.dport for f in delivered] == [7000 + i for i in range(inbound.MAX_HELD)]
        assert [f.port_first_seen for f in delivered] == [False, True] + \
            [False] * (inbound.MAX_HELD - 2)  # 7001 is held by a socket
        assert reads and loop_thread not in reads and len(reads) <= 2  # the sample, the check
    finally:
        await checks.stop()
