"""The kernel's open, connect, dup, socket and accept filters: a container opens paths, connects
to destinations, dups fds onto 0-2, makes sockets and accepts connections that some rule watches
and others none does; exactly the ones the rules' derived filters let through reach user space,
as the filters' Python models (OpenFilter, ConnectFilter, DupFilter, SocketFilter,
AcceptFilter) say. An open that succeeded
is judged by the file the kernel opened (through a symlinked directory, "." and "//", a
relative path); one that failed by its path as written. With the filters off, every one
does."""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from cauditd.events import FileEvent, NetSyscallEvent, SyscallEvent
from cauditd.rules.fields import OPEN_TYPES
from cauditd.rules.loader import load_ruleset
from cauditd.rules.prefilter import READ, WRITE
from tests.conftest import Containers, DaemonThread, daemon_config, unavailable

pytestmark = pytest.mark.usefixtures("ebpf", "docker")

RULES = """
[macros]
reads = "evt.type in (open, openat, openat2) and evt.is_open_read = true"
writes = "evt.type in (open, openat, openat2, creat) and evt.is_open_write = true"

[[rules]]
name = "shadow read"
condition = "reads and fd.name = /etc/shadow"
output = "%fd.name"
priority = "warning"

[[rules]]
name = "srv written"
condition = "writes and fd.name startswith /srv/"
output = "%fd.name"
priority = "warning"

[[rules]]
name = "key read"
condition = "reads and fd.filename = id_rsa"
output = "%fd.name"
priority = "warning"

[[rules]]
name = "odd port"
condition = "evt.type = connect and fd.dport = 4444"
output = "%fd.name"
priority = "warning"

[[rules]]
name = "stdio socket"
condition = "evt.type in (dup, dup2, dup3) and evt.arg.oldfd_is_socket = 1"
output = "%evt.arg.newfd"
priority = "warning"

[[rules]]
name = "packet socket"
condition = "evt.type = socket and evt.arg.domain = AF_PACKET"
output = "%evt.arg.domain"
priority = "warning"

[[rules]]
name = "socket on stdio"
condition = "evt.type = socket and evt.rawres in (0, 1, 2) and evt.arg.domain contains AF_INET"
output = "%evt.arg.domain"
priority = "warning"

[[rules]]
name = "relay listening"
condition = "evt.type in (accept, accept4) and proc.stdio_wired_to_network intersects (sh)"
output = "%fd.name"
priority = "warning"

[[rules]]
name = "metadata"
condition = "evt.type = connect and fd.dip = 169.254.169.254"
output = "%fd.name"
priority = "warning"
"""

# (what the container opens, the mode, the path user space reports, whether the open succeeds:
# the kernel judges a successful open by the file it opened, a failed one by its path as written)
OPENS = [
    ("/etc/shadow", READ, "/etc/shadow", True),
    ("/etc/shadowy", READ, "/etc/shadowy", False),
    ("/etc/hostname", READ, "/etc/hostname", True),
    ("/etc/./hosts", READ, "/etc/hosts", True),
    ("//etc/group", READ, "/etc/group", True),
    ("/etc/x/../services", READ, "/etc/services", False),
    ("rel-file", READ, "/tmp/rel-file", False),
    ("/tmp/e/shadow", READ, "/etc/shadow", True),  # /tmp/e -> /etc
    ("../etc/shadow", READ, "/etc/shadow", True),  # from /tmp
    ("/tmp/e/passwd", READ, "/etc/passwd", True),
    ("/home/u/.ssh/id_rsa", READ, "/home/u/.ssh/id_rsa", False),
    ("/home/u/.ssh/id_rsa.pub", READ, "/home/u/.ssh/id_rsa.pub", False),
    ("/srv/out", WRITE, "/srv/out", True),
    ("/tmp/out", WRITE, "/tmp/out", True),
    ("/etc/shadow", WRITE, "/etc/shadow", True),
]


def kernel_verdict(opens: Any, raw: str, mode: int, reported: str, succeeds: bool) -> bool:
    """What the kernel does with an open, as the model says: the resolved file of one that
    succeeded, the path as written of one that failed."""
    return opens.passes(reported if succeeds else raw, mode, failed=not succeeds)
# (address, port) of connects from a container without a network: the syscall happens, and
# fails at once (ENETUNREACH); no packet leaves
CONNECTS = [("10.99.0.1", 4444), ("10.99.0.1", 80), ("169.254.169.254", 80),
            ("10.99.0.1", 5555)]
# (comm, domain, fd) of the sockets the script makes: nc's for each connect, then
# cauditd_probe dupsock's, cauditd_attack packet's and udp's, cauditd_evade socket-low's
SOCKETS = {("nc", 2, 3), ("cauditd_probe", 2, 3), ("cauditd_attack", 17, 3),
           ("cauditd_attack", 2, 3), ("cauditd_evade", 2, 0)}
ACCEPTS = ("accept", "accept4")
AF_INET, AF_INET6 = 2, 10
SENTINEL = "sentinel-end"  # relative: always passes, and marks the end of the script


def script() -> str:
    lines = ["cd /tmp", "mkdir -p /srv", "ln -s /etc /tmp/e"]
    for raw, mode, _reported, _succeeds in OPENS:
        lines.append(f"cat {raw} >/dev/null 2>&1" if mode == READ else f": >> {raw}")
    lines += [f"nc -w 1 {addr} {port} </dev/null 2>/dev/null" for addr, port in CONNECTS]
    lines += ["cat < /etc/hostname > /dev/null", "cauditd_probe dupsock"]  # file, socket onto 0-2
    # sockets: AF_PACKET and UDP on fd 3, TCP landing on a freed fd 0
    lines += ["cauditd_attack packet", "cauditd_attack udp",
              f"cauditd_evade socket-low {CONNECTS[0][0]} 4444"]
    # accepts (over the container's own loopback): a listener on /dev/null, one between pipes
    for port, listener in ((5001, "nc -l -p 5001 </dev/null >/dev/null"),
                           (5002, "echo | nc -l -p 5002 | cat >/dev/null")):
        lines.append(f"({listener} &); sleep 0.3; nc -w 1 127.0.0.1 {port} </dev/null")
    # ... and a child accepting, no address asked, on the listener its parent made
    lines.append("echo | cauditd_evade accept-inherited 5003 | cat >/dev/null")
    lines.append(f"cat {SENTINEL} >/dev/null 2>&1 || true")  # arrives after everything above
    return "; ".join(lines)


def observed(tmp_path: Path, containers: Containers, kernel_filters: bool) -> dict[str, Any]:
    """What reached user space of the container's opens ((path, mode)) and connects ((address,
    port)), and what the kernel counted as filtered meanwhile."""
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    config = daemon_config(tmp_path, all_syscalls=False, kernel_filters=kernel_filters)
    config.rules.default_rules = False
    config.rules.paths = [str(rules)]
    runner = DaemonThread(config)
    runner.start()
    try:
        name = f"cauditd-t-{uuid.uuid4().hex[:10]}"
        result = containers.run("sh", "-c", script(), name=name, options=("--network", "none"))
        assert result.returncode == 0, result.stderr
        cid = containers.inspect_id(name)

        def ours(ev: object) -> bool:
            return isinstance(ev, FileEvent) and ev.type in OPEN_TYPES and ev.container.id == cid

        sentinel = runner.wait_for(
            lambda ev: ours(ev) and ev.path == f"/tmp/{SENTINEL}")
        events = [ev for ev in runner.events if ev.container.id == cid]
        events = events[:events.index(sentinel)]
        filters = runner.call(runner.daemon.stats)["probes"]["syscall"]["filters"]  # /v1/stats
    finally:
        runner.stop()  # polls the kernel's counters a last time
    return {
        "opens": Counter((ev.path, WRITE if ev.flags & 3 else READ) for ev in events
                         if ours(ev)),
        "connects": {(ev.addr, ev.port) for ev in events
                     if isinstance(ev, NetSyscallEvent) and ev.type == "connect"
                     and ev.addr != "127.0.0.1"},  # the accepts' clients
        "accepts": sorted((ev.process.stdio[0].kind, ev.family)  # the listener's stdin
                          for ev in events if isinstance(ev, NetSyscallEvent)
                          and ev.type in ACCEPTS and ev.process is not None),
        "dups": {(ev.comm, ev.args["oldfd_is_socket"]) for ev in events
                 if isinstance(ev, SyscallEvent) and ev.type in ("dup", "dup2", "dup3")
                 and not ev.comm.startswith("runc")},  # runc's own stdio set-up
        "sockets": {(ev.comm, ev.args["domain"], ev.ret) for ev in events
                    if isinstance(ev, SyscallEvent) and ev.type == "socket"},
        "filters": filters,
        "filtered": runner.daemon.probes.filtered,
    }


def test_only_calls_a_rule_can_match_reach_user_space(
    tmp_path: Path, containers: Containers
) -> None:
    rules = tmp_path / "model.toml"
    rules.write_text(RULES)
    ruleset = load_ruleset([rules])
    opens, connects = ruleset.open_filter(), ruleset.connect_filter()
    expected_opens = Counter((reported, mode) for raw, mode, reported, succeeds in OPENS
                             if kernel_verdict(opens, raw, mode, reported, succeeds))
    assert expected_opens == Counter({
        ("/etc/shadow", READ): 3,  # as written, through the symlinked /tmp/e, and as ../etc
        ("/etc/services", READ): 1, ("/tmp/rel-file", READ): 1,
        ("/home/u/.ssh/id_rsa", READ): 1, ("/srv/out", WRITE): 1,
    })
    expected_connects = {c for c in CONNECTS if connects.passes(2, *c)}
    assert expected_connects == {("10.99.0.1", 4444), ("169.254.169.254", 80)}

    seen = observed(tmp_path, containers, kernel_filters=True)
    reported_opens = {(reported, mode) for _raw, mode, reported, _ok in OPENS}
    assert Counter({k: n for k, n in seen["opens"].items() if k in reported_opens}) == (
        expected_opens)
    assert seen["connects"] == expected_connects
    assert seen["dups"] == {("cauditd_probe", 1)}  # not the shell's dup2 of a file onto 0
    # nc's, cauditd_probe's (fd 3, then dup'd) and the UDP socket stay in the kernel
    sockets = ruleset.socket_filter()
    assert seen["sockets"] == {s for s in SOCKETS if sockets.passes(s[1], s[2])} == {
        ("cauditd_attack", 17, 3), ("cauditd_evade", 2, 0)}
    # the piped listeners' alone; the inherited listener's family is known (the fd table)
    assert seen["accepts"] == [("pipe", AF_INET), ("pipe", AF_INET6)]
    assert ruleset.accept_filter().piped_only
    assert seen["filters"] == {"open": "opens of 1 prefixes, 1 exacts, 1 names",
                               "connect": "connects to 1 ports, 1 networks",
                               "dup": "dups of sockets onto fds 0-2",
                               "socket": "sockets of AF_PACKET; sockets of AF_INET, AF_INET6 "
                                         "on fds 0-2",
                               "accept": "accepts of processes with piped stdio"}
    # counted (cauditd_syscalls_filtered)
    assert seen["filtered"]["open"] >= len(OPENS) - expected_opens.total()
    assert seen["filtered"]["connect"] >= len(CONNECTS) - len(expected_connects)
    assert seen["filtered"]["dup"] >= 1
    assert seen["filtered"]["socket"] >= len(SOCKETS) - 2
    assert seen["filtered"]["accept"] >= 1


def test_with_the_filters_off_every_call_arrives(tmp_path: Path, containers: Containers) -> None:
    seen = observed(tmp_path, containers, kernel_filters=False)
    assert {(reported, mode) for _raw, mode, reported, _ok in OPENS} <= set(seen["opens"])
    assert seen["connects"] == set(CONNECTS)
    assert {("sh", 0), ("cauditd_probe", 1)} <= seen["dups"]
    assert seen["sockets"] >= SOCKETS
    assert [kind for kind, _family in seen["accepts"]] == ["file", "pipe", "pipe"]
    assert seen["filters"] == {"open": "every open", "connect": "every connect",
                               "dup": "every dup onto fds 0-2", "socket": "every socket",
                               "accept": "every accept"}
    assert seen["filtered"] == {"open": 0, "connect": 0, "dup": 0, "socket": 0, "accept": 0}


def test_the_probes_load_with_the_kernels_layout(ebpf: None) -> None:
    """Where the kernel's BTF can be read (CI's machines), the probes that read its structs
    load: a change the verifier refuses fails here, rather than leaving the daemon on paths as
    written with a warning, and the tests that need the structs failing far from the cause."""
    import asyncio

    from cauditd.config import ProbesConfig
    from cauditd.probes.layout import KernelLayout
    from cauditd.probes.syscall import SyscallProbes

    if KernelLayout.read() is None:
        unavailable("the kernel's BTF cannot be read (/sys/kernel/btf/vmlinux)")

    async def loaded_with_layout() -> bool:
        probes = SyscallProbes(ProbesConfig(), lambda events: None)
        await probes.start()
        try:
            return probes.kernel_structs
        finally:
            await probes.stop()

    assert asyncio.run(loaded_with_layout())


def test_a_reload_replaces_the_kernel_tables(tmp_path: Path) -> None:
    """set_kernel_filters twice (a SIGHUP reload): the kernel's tables hold
    exactly the second rule set's entries afterwards, and the filters are on."""
    import asyncio
    import ctypes

    from cauditd.config import ProbesConfig
    from cauditd.probes.syscall import SyscallProbes

    first, second = tmp_path / "first.toml", tmp_path / "second.toml"
    first.write_text(RULES)
    second.write_text(RULES.replace("/etc/shadow", "/etc/gshadow").replace("4444", "5555")
                      .replace("fd.filename = id_rsa", "fd.filename = id_ed25519"))

    async def load_twice() -> dict[str, Any]:
        probes = SyscallProbes(ProbesConfig(), lambda events: None)
        await probes.start()
        try:
            for rules in (first, second):
                probes.set_kernel_filters(load_ruleset([rules]).kernel_filters())
            bpf = probes._bpf  # the kernel's view, read back through BCC
            settings = bpf["settings"]
            return {
                # (path up to its NUL, bits compared): an exact path's bits include its NUL
                "prefixes": {(bytes(k.path), k.prefixlen) for k in bpf["open_prefixes"]},
                "names": {bytes(k.name).rstrip(b"\0") for k in bpf["open_names"]},
                "ports": {int(k.value) for k in bpf["connect_ports"]},
                "on": [int(settings[ctypes.c_int(i)].value) for i in (1, 3)],
            }
        finally:
            await probes.stop()

    tables = asyncio.run(load_twice())
    assert tables == {"prefixes": {(b"/srv/", 40), (b"/etc/gshadow", 104)},
                      "names": {b"id_ed25519"}, "ports": {5555}, "on": [1, 1]}


def _dup_onto_stdin(mode: str) -> int:
    """A child process of this one that accepted a connection, then dups onto fd 0: the
    accepted socket ("accepted"), an outbound one ("outbound"), or an outbound one put first
    on the number the accepted one had, closed and reused ("reused"); returns its pid."""
    import os
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    pid = os.fork()
    if pid == 0:
        try:
            peer = socket.create_connection(listener.getsockname())
            conn, _ = listener.accept()
            out = socket.create_connection(listener.getsockname())
            if mode == "accepted":
                os.dup2(conn.fileno(), 0)
            else:
                number = conn.fileno()
                conn.close()
                if mode == "reused":
                    assert os.open("/dev/null", os.O_RDONLY) == number
                    os.dup2(out.fileno(), number)  # onto a number above 2: not judged
                    os.dup2(number, 0)
                else:
                    os.dup2(out.fileno(), 0)
            peer.close()
        finally:
            os._exit(0)
    listener.close()
    os.waitpid(pid, 0)
    return pid


def test_a_socket_is_accepted_by_what_it_is_not_by_its_fd_number() -> None:
    """With the default rules only dups of sockets that are not the server's end of a
    connection reach user space: the kernel knows accepted sockets by inode, so an fd number
    that once held one and now holds an outbound socket does not hide a dup of it onto 0."""
    import asyncio

    from cauditd.config import ProbesConfig
    from cauditd.probes.syscall import SyscallProbes
    from cauditd.rules import default_rules_dir

    events: list[Any] = []

    async def dups() -> dict[str, list[int]]:
        probes = SyscallProbes(ProbesConfig(track_host=True), events.extend)
        await probes.start()
        try:
            ruleset = load_ruleset([default_rules_dir()])
            probes.set_syscalls(ruleset.needed_syscalls())
            probes.set_kernel_filters(ruleset.kernel_filters())
            pids = {mode: await asyncio.to_thread(_dup_onto_stdin, mode)
                    for mode in ("accepted", "outbound", "reused")}
            await asyncio.sleep(1)  # the reader's next drains
        finally:
            await probes.stop()
        return {mode: [ev.ret for ev in events if isinstance(ev, SyscallEvent)
                       and ev.type in ("dup2", "dup3") and ev.pid == pid]
                for mode, pid in pids.items()}

    assert asyncio.run(dups()) == {"accepted": [], "outbound": [0], "reused": [0]}
