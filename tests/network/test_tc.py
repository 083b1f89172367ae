"""tc attach/detach on a veth of our own netns: container lifecycle, stop, and the leftovers of
a SIGKILLed daemon removed at the next start. No packet is sent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from cauditd.config import NetworkConfig
from cauditd.events import ContainerInfo
from cauditd.network import tc, veth
from tests.conftest import REPO
from tests.network.conftest import MonitorThread, OwnVeth, StaticRegistry


def test_veth_found_from_netns(ebpf: None, own_veth: OwnVeth) -> None:
    net = veth.container_net(own_veth.pid)
    assert net.host_ifindexes == [own_veth.ifindex]
    assert not veth.same_netns_as_host(own_veth.pid)


def test_veth_made_inside_the_netns_is_not_taken_for_a_host_peer(
        ebpf: None, own_veth: OwnVeth) -> None:
    """A container with NET_ADMIN can make a veth pair inside its own netns, giving one end the
    ifindex of another host interface: that end's IFLA_LINK then names the host interface,
    but the peer lives in the container's netns (IFLA_LINK_NETNSID says so). Attaching there
    would attribute the other interface's traffic to this container."""
    victim, victim_peer = f"{own_veth.host_name}v", f"{own_veth.host_name}w"
    sh = lambda *a: subprocess.run(a, check=True, capture_output=True)  # noqa: E731
    sh("ip", "link", "add", victim, "type", "veth", "peer", "name", victim_peer)
    try:
        index = Path(f"/sys/class/net/{victim}/ifindex").read_text().strip()
        sh("ip", "netns", "exec", own_veth.netns, "ip", "link", "add", "fake0", "index", index,
           "type", "veth", "peer", "name", "fake1")
        assert veth.container_net(own_veth.pid).host_ifindexes == [own_veth.ifindex]
        registry = StaticRegistry([ContainerInfo(id="e0" * 32, pid=own_veth.pid)])
        runner = MonitorThread(NetworkConfig(), registry)
        runner.start()
        try:
            runner.wait_until(lambda: runner.monitor.attached(), "attach")
            assert runner.monitor.attached() == {"e0" * 32: [own_veth.ifindex]}
            assert tc.ours(int(index)) == []
            assert runner.monitor.stats()["veth_foreign_peers"] == 2  # fake0 and fake1
        finally:
            runner.stop()
    finally:
        subprocess.run(["ip", "link", "del", victim], capture_output=True)


def test_attach_detach_follow_the_registry(ebpf: None, own_veth: OwnVeth) -> None:
    registry = StaticRegistry()
    runner = MonitorThread(NetworkConfig(), registry)
    runner.start()
    try:
        container = ContainerInfo(id="c0" * 32, name="netns-box", pid=own_veth.pid)
        registry.items.append(container)
        runner.wait_until(lambda: runner.monitor.attached().get(container.id), "attach")
        mine = tc.owner_token()
        assert sorted(tc.ours(own_veth.ifindex)) == [f"cauditd-net-egress.{mine}",
                                                     f"cauditd-net-ingress.{mine}"]
        registry.items.clear()
        runner.wait_until(lambda: not runner.monitor.attached(), "detach")
        # attached() forgets the container before its filters are deleted (netlink calls
        # made after the bookkeeping, off the loop): the filters go right after
        deadline = time.monotonic() + 20
        while tc.ours(own_veth.ifindex) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert tc.ours(own_veth.ifindex) == []
        registry.items.append(container)
        runner.wait_until(lambda: runner.monitor.attached().get(container.id), "re-attach")
    finally:
        runner.stop()
    assert tc.ours(own_veth.ifindex) == []  # stop removes them


def test_host_network_process_is_not_attached(ebpf: None) -> None:
    registry = StaticRegistry()
    runner = MonitorThread(NetworkConfig(), registry)
    runner.start()
    try:
        proc = subprocess.Popen(["sleep", "60"])
        try:
            registry.items.append(ContainerInfo(id="d0" * 32, pid=proc.pid))
            runner.wait_until(lambda: runner.monitor.counters["host_network"], "host network seen")
            assert runner.monitor.attached() == {}
            assert runner.monitor.stats()["containers_skipped"] == 1
            registry.items.clear()  # removed: nothing of it stays (host-network churn)
            runner.wait_until(lambda: not runner.monitor.stats()["containers_skipped"],
                              "the skipped container forgotten")
        finally:
            proc.kill()
            proc.wait()
    finally:
        runner.stop()


LEAVE_FILTERS = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {daemon!r})
    from bcc import BPF
    from cauditd.network import tc
    from cauditd.probes.bpf import source
    b = BPF(text=source(["net.c"], {{"NET_RINGBUF_PAGES": 16, "DNS_CAPTURE": 512,
                                    "FLOW_TABLE_SIZE": 1024}}))
    programs = [tc.TcProgram(b.load_func("net_" + d, BPF.SCHED_CLS).fd, d)
                for d in ("egress", "ingress")]
    tc.attach({ifindex}, programs)
    print("attached", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
""")


def test_killed_daemon_leftovers_removed_at_start(ebpf: None, own_veth: OwnVeth) -> None:
    script = LEAVE_FILTERS.format(daemon=str(REPO / "daemon"), ifindex=own_veth.ifindex)
    killed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120)
    assert killed.returncode == -signal.SIGKILL and "attached" in killed.stdout, killed.stderr
    assert len(tc.ours(own_veth.ifindex, every=True)) == 2  # the kernel keeps them
    runner = MonitorThread(NetworkConfig(), StaticRegistry())
    runner.start()
    try:
        assert tc.ours(own_veth.ifindex, every=True) == []
        assert runner.monitor.stats()["leftovers_cleaned"] >= 1
    finally:
        runner.stop()


HOLD_FILTERS = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {daemon!r})
    from bcc import BPF
    from cauditd.network import tc
    from cauditd.probes.bpf import source
    held = tc._bind({token})  # a token whose number is no pid on the host
    b = BPF(text=source(["net.c"], {{"NET_RINGBUF_PAGES": 16, "DNS_CAPTURE": 512,
                                    "FLOW_TABLE_SIZE": 1024}}))
    programs = [tc.TcProgram(b.load_func("net_" + d, BPF.SCHED_CLS).fd, d, owner={token})
                for d in ("egress", "ingress")]
    tc.attach({ifindex}, programs)
    print("attached", flush=True)
    time.sleep(120)
""")


def test_live_daemon_in_another_pid_namespace_keeps_its_filters(
    ebpf: None, own_veth: OwnVeth
) -> None:
    """A daemon in a pid namespace of its own (a container, an nspawn machine) is alive though
    its pid means nothing here: its filters survive our cleanup, and go once it is killed."""
    token = next(t for t in range(tc.TOKENS - 1, 1, -1) if not os.path.exists(f"/proc/{t}"))
    script = HOLD_FILTERS.format(daemon=str(REPO / "daemon"), ifindex=own_veth.ifindex,
                                 token=token)
    other = subprocess.Popen(["unshare", "--pid", "--fork", "--kill-child", sys.executable,
                              "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout is not None and "attached" in other.stdout.readline()
        tc.clean_leftovers()
        assert len(tc.ours(own_veth.ifindex, every=True)) == 2
    finally:
        other.kill()
        other.wait()
    deadline = time.monotonic() + 10
    while tc.ours(own_veth.ifindex, every=True) and time.monotonic() < deadline:
        tc.clean_leftovers()
        time.sleep(0.2)
    assert tc.ours(own_veth.ifindex, every=True) == []


def test_detach_keeps_foreign_filters(ebpf: None, own_veth: OwnVeth) -> None:
    """Another tool's filter on the same clsact survives our detach and our cleanup."""
    dev = own_veth.host_name
    subprocess.run(["tc", "qdisc", "add", "dev", dev, "clsact"], check=True)
    subprocess.run(["tc", "filter", "add", "dev", dev, "ingress", "prio", "7", "bpf",
                    "bytecode", "1,6 0 0 0,", "classid", "1"], check=True)  # classic BPF, no name
    tc.clean_leftovers()
    tc.detach(own_veth.ifindex, remove_clsact=True)
    assert tc.owner_of("cauditd-net-egress.42") == 42 and tc.owner_of("other") is None
    shown = subprocess.run(["tc", "filter", "show", "dev", dev, "ingress"],
                           capture_output=True, text=True, check=True).stdout
    assert "pref 7 bpf" in shown and "bytecode" in shown
