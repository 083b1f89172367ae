"""The field registry: values on synthetic events, <NA> fallbacks, docs and `cauditd fields`."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import pytest

from cauditd.events import (
    ContainerInfo,
    ContainerMount,
    Event,
    ExecEvent,
    ProcessInfo,
    StdioFd,
)
from cauditd.rules import fields_socket, procfs
from cauditd.rules.fields import FIELDS, format_fields, lookup, markdown_table
from tests.rules.fakeproc import FakeProc, rootfs
from tests.rules.synth import (
    BASH,
    CONTAINER,
    INIT,
    TS,
    WORKER,
    connect,
    dns,
    execve,
    fd_placed,
    file_event,
    flow,
    open_write,
    proc,
    syscall,
)

EXEC = execve("/usr/bin/curl", "curl", "-s", "http://x", parent=BASH, cwd="/srv", tty=34817)
ORPHAN = ExecEvent(type="execve", ts_ns=1, pid=77, comm="sh", exe="", argv=())
STARTED_WITH = execve("/usr/bin/curl", "curl", parent=BASH, described=True, vpid=3,
                      environ=b"GLIBC_TUNABLES=x=1\0\xff=y\0no-equals-sign\0")
STARTED = execve("/bin/sleep", "sleep", "1", parent=dataclasses.replace(BASH, start_ns=TS - 9000))
STARTED.process.start_ns = TS - 5000  # type: ignore[union-attr]
APP = file_event("openat", "/x", uid=1000)
BIND_SHELL_CHILD = file_event("openat", "/x", process=proc("/bin/sh", "sh", stdio=(
    StdioFd("ipv4", socket=5), StdioFd("pipe", (1, 2)), StdioFd(""))))
RELAYED_SHELL = execve("/bin/sh", "sh")
RELAYED_SHELL.process.stdio = (StdioFd("unix", socket=6),) * 3  # type: ignore[union-attr]

APP.gid = 1000
DOCKER = ContainerInfo(
    id="d0" * 32, name="db", image="postgres:16", image_id="sha256:abc", runtime="docker",
    labels={"team": "data", "tier": "", "io.kubernetes.pod.uid": "u-1"}, pid=4000,
    mounts=(ContainerMount("/etc/app", "/srv/conf", "ro", False, "rprivate"),
            ContainerMount("/var/run/docker.sock", "/var/run/docker.sock", "", True, "")),
)
IN_DOCKER = execve("/bin/ls", container=DOCKER)
DOCKER_CAPS = ("CAP_CHOWN CAP_DAC_OVERRIDE CAP_FOWNER CAP_FSETID CAP_KILL CAP_SETGID CAP_SETUID "
               "CAP_SETPCAP CAP_NET_BIND_SERVICE CAP_NET_RAW CAP_SYS_CHROOT CAP_MKNOD "
               "CAP_AUDIT_WRITE CAP_SETFCAP")


def proc_of(pid: int) -> ProcessInfo:
    return ProcessInfo(pid=pid, exe="/bin/sh", args=("sh",), container_id=CONTAINER.id)


ACCEPTED = connect("10.0.0.9", 80, evt_type="accept", peer=("10.0.0.8", 5555))
INBOUND = flow("172.17.0.2", 7000, direction="ingress")
PTRACE = syscall("ptrace", {"request": 16, "pid": 1, "addr": 0, "data": 0})
EXE_FILE = Path(__file__)


@pytest.fixture(autouse=True)
def processes(fake_proc: FakeProc, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The synthetic processes in the fake /proc: curl (4200) below bash (4100) below nginx
    (4000, the container's first process and session leader), with a container root."""
    root = rootfs(tmp_path / "rootfs", "root:x:0:0:root:/root:/bin/sh\n"
                  "app:x:1000:1000::/home/app:/bin/sh\n", "root:x:0:\napp:x:1000:\n")
    fake_proc.process(4200, vpid=7, env=("PATH=/bin", "HOME=/root"), rootfs=root, exe=EXE_FILE)
    fake_proc.process(4100, vpid=5, sockets=(9001, 9002), tcp=(9001,))
    fake_proc.process(4000, vpid=1, start_ticks=100)
    monkeypatch.setattr(fields_socket, "_dns_names",
                        [lambda container, ip: ("api.internal",) if ip == "10.0.0.1" else ()])

CASES: list[tuple[str, Event, Any]] = [
    ("evt.type", EXEC, "execve"),
    ("evt.source", flow("1.1.1.1", 53), "network"),
    ("evt.dir", EXEC, "<"),
    ("evt.res", open_write("/x", ret=-13), "EACCES"),
    ("evt.rawres", open_write("/x", ret=-13), -13),
    ("evt.failed", open_write("/x", ret=-13), True),
    ("proc.name", EXEC, "curl"),
    ("proc.name", ORPHAN, "sh"),
    ("proc.exe", EXEC, "curl"),
    ("proc.exepath", EXEC, "/usr/bin/curl"),
    ("proc.cmdline", EXEC, "curl -s http://x"),
    ("proc.args", EXEC, "-s http://x"),
    ("proc.pid", EXEC, 4200),
    ("proc.ppid", EXEC, 4100),
    ("proc.pname", EXEC, "bash"),
    ("proc.pexe", EXEC, "bash"),
    ("proc.pexepath", EXEC, "/bin/bash"),
    ("proc.pcmdline", EXEC, "bash"),
    ("proc.aname[2]", EXEC, "nginx"),
    ("proc.aname", EXEC, ("bash", "nginx", "containerd-shim")),
    ("proc.apid[2]", EXEC, 4000),
    ("proc.pname", ORPHAN, None),
    ("proc.cwd", EXEC, "/srv/"),
    ("proc.tty", EXEC, 34817),
    ("proc.pinet_socket", EXEC, True),  # bash holds a TCP socket
    ("proc.pinet_socket", execve("/bin/ls", parent=WORKER), None),  # nginx worker: gone
    ("proc.pinet_socket", execve("/bin/ls", pid=4100, parent=INIT), False),  # nginx: none
    ("proc.pinet_socket", ORPHAN, None),
    ("proc.stdio_one_socket", RELAYED_SHELL, True),
    ("proc.stdio_one_socket", BIND_SHELL_CHILD, False),
    ("proc.stdio_one_socket", EXEC, None),  # not told: no kernel layout
    ("proc.stdin.type", BIND_SHELL_CHILD, "ipv4"),  # a fork inherits what its exec found
    ("proc.stdout.type", BIND_SHELL_CHILD, "pipe"),
    ("proc.stderr.type", BIND_SHELL_CHILD, None),  # closed at the exec
    ("proc.stdin.type", EXEC, None),  # not told: no kernel layout
    ("proc.is_container_init", EXEC, False),
    ("proc.is_container_init", execve("/usr/sbin/nginx", pid=4000), True),
    ("user.uid", file_event("openat", "/x", uid=1000), 1000),
    ("user.name", file_event("openat", "/x", uid=0), "root"),
    ("user.name", APP, "app"),
    ("user.name", file_event("openat", "/x", uid=4242), None),
    ("group.gid", EXEC, 0),
    ("fd.name", open_write("/etc/x/y.conf"), "/etc/x/y.conf"),
    ("fd.directory", open_write("/etc/x/y.conf"), "/etc/x"),
    ("fd.directory", open_write("/y"), "/"),
    ("fd.filename", open_write("/etc/x/y.conf"), "y.conf"),
    ("fd.typechar", open_write("/y"), "f"),
    ("fd.type", connect("::1", 80, family=10), "ipv6"),
    ("fd.num", open_write("/y", ret=7), 7),
    ("fd.num", open_write("/y", ret=-2), -1),
    ("fd.sip", connect("10.0.0.1", 80, evt_type="bind"), "10.0.0.1"),
    ("fd.sip", connect("10.0.0.1", 80), "10.0.0.1"),
    ("fd.sip", ACCEPTED, "10.0.0.9"),
    ("fd.dip", connect("10.0.0.1", 80), "10.0.0.1"),
    ("fd.dport", connect("10.0.0.1", 80), 80),
    ("fd.dport", ACCEPTED, 5555),
    ("fd.sport", flow("1.1.1.1", 53), 53),
    ("fd.sport", connect("10.0.0.1", 80), 80),
    ("fd.cport", flow("1.1.1.1", 53), 40000),
    ("fd.cport", connect("10.0.0.1", 80), None),
    ("fd.cip", ACCEPTED, "10.0.0.8"),
    ("fd.cip", INBOUND, "172.17.0.2"),
    ("fd.lip", connect("10.0.0.1", 80), None),
    ("fd.lip", INBOUND, "172.17.0.2"),
    ("fd.rip", connect("10.0.0.1", 80), "10.0.0.1"),
    ("fd.rip", ACCEPTED, "10.0.0.8"),
    ("fd.lport", INBOUND, 7000),
    ("fd.rport", connect("10.0.0.1", 80), 80),
    ("fd.rport", ACCEPTED, 5555),
    ("fd.cnet", ACCEPTED, "10.0.0.8"),
    ("fd.snet", connect("10.0.0.1", 80), "10.0.0.1"),
    ("fd.lnet", flow("1.1.1.1", 53), "172.17.0.2"),
    ("fd.rnet", flow("1.1.1.1", 53), "1.1.1.1"),
    ("fd.ip", ACCEPTED, ("10.0.0.8", "10.0.0.9")),
    ("fd.port", flow("1.1.1.1", 53), (40000, 53)),
    ("fd.sockfamily", connect("::1", 80, family=10), "ip"),
    ("fd.sockfamily", connect("/run/x.sock", 0, family=1), "unix"),
    ("fd.is_server", ACCEPTED, True),
    ("fd.is_server", connect("10.0.0.1", 80), False),
    ("fd.connected", connect("10.0.0.1", 80), True),
    ("fd.connected", connect("10.0.0.1", 53, evt_type="sendto"), False),
    ("fd.name_changed", connect("10.0.0.1", 53, evt_type="sendto"), True),
    ("fd.name_changed", connect("10.0.0.1", 53, evt_type="bind"), False),
    ("fd.sip.name", connect("10.0.0.1", 443), ("api.internal",)),
    ("fd.rip.name", connect("10.0.0.1", 443), ("api.internal",)),
    ("fd.cip.name", connect("10.0.0.1", 443), None),
    ("fd.lip.name", connect("10.0.0.1", 443), None),
    ("fd.dip", connect("10.0.0.9", 80, evt_type="accept", peer=("10.0.0.8", 5555)), "10.0.0.8"),
    ("fd.net", flow("1.1.1.1", 53), ("172.17.0.2", "1.1.1.1")),
    ("fd.l4proto", flow("1.1.1.1", 53, proto="udp"), "udp"),
    ("fd.name", flow("1.1.1.1", 53), "172.17.0.2:40000->1.1.1.1:53"),
    ("container.id", EXEC, CONTAINER.id[:12]),
    ("container.full_id", EXEC, CONTAINER.id),
    ("container.id", syscall("bpf").__class__(type="bpf", ts_ns=1), "host"),
    ("container.name", EXEC, "web"),
    ("container.image", EXEC, "registry.local/team/nginx:1.25"),
    ("container.image.repository", EXEC, "registry.local/team/nginx"),
    ("container.image.tag", EXEC, "1.25"),
    ("container.privileged", EXEC, False),
    ("k8s.pod.name", EXEC, "web-0"),
    ("k8s.ns.name", EXEC, "prod"),
    ("evt.arg.newpath", file_event("rename", "/tmp/a", target="/etc/b"), "/etc/b"),
    ("evt.arg.target", file_event("symlink", "/etc/shadow", target="/tmp/s"), "/etc/shadow"),
    ("evt.arg.linkpath", file_event("symlink", "/etc/shadow", target="/tmp/s"), "/tmp/s"),
    ("evt.arg.mode", file_event("chmod", "/x", mode=0o4755),
     "S_IXOTH|S_IROTH|S_IXGRP|S_IRGRP|S_IXUSR|S_IWUSR|S_IRUSR|S_ISUID"),
    ("evt.arg.flags", open_write("/x", flags=0o1101), "O_TRUNC|O_CREAT|O_WRONLY"),
    ("evt.arg.flags", open_write("/x", flags=0o2000000), "O_RDONLY|O_CLOEXEC"),
    ("evt.rawarg.mode", file_event("chmod", "/x", mode=0o4755), 0o4755),
    ("evt.arg.request", PTRACE, "PTRACE_ATTACH"),
    ("evt.arg.domain", syscall("socket", {"domain": 17, "type": 3}), "AF_PACKET"),
    ("evt.arg.type", syscall("socket", {"domain": 2, "type": 0o2000001}),
     "SOCK_STREAM|SOCK_CLOEXEC"),
    ("evt.arg.flags", syscall("unshare", {"flags": 0x20020000}), "CLONE_NEWNS|CLONE_NEWPID"),
    ("evt.arg.nstype", syscall("setns", {"fd": 3, "nstype": 0x4000000}), "CLONE_NEWUTS"),
    ("evt.arg.flags", syscall("mount", {"flags": 0x5000}), "BIND|REC"),
    ("evt.arg.dir", syscall("mount", {"target": "/mnt", "flags": 0}), "/mnt"),
    ("evt.arg.cmd", syscall("bpf", {"cmd": 5}), "BPF_PROG_LOAD"),
    ("evt.arg.filename", file_event("chmod", "/x", mode=0o755), "/x"),
    ("evt.arg[2]", open_write("/etc/x"), "/etc/x"),
    ("evt.arg[0]", open_write("/etc/x", ret=-13), "EACCES"),
    ("evt.rawarg[0]", open_write("/etc/x", ret=-13), -13),
    ("evt.args", PTRACE, "res=0 addr=0 data=0 request=16(PTRACE_ATTACH) pid=1"),
    ("evt.rawtime", EXEC, EXEC.wall_ns),
    ("evt.num", EXEC, None),
    ("evt.buffer", EXEC, None),
    ("evt.is_open_exec", open_write("/x", mode=0o755), True),
    ("evt.is_open_exec", open_write("/x", mode=0o644), False),
    ("proc.aexe[1]", EXEC, "bash"),
    ("proc.aexe", EXEC, ("bash", "nginx", "containerd-shim-runc-v2")),
    ("proc.aexepath[2]", EXEC, "/usr/sbin/nginx"),
    ("proc.acmdline[2]", EXEC, "nginx -g daemon off;"),
    ("proc.exeline", EXEC, "curl -s http://x"),
    ("proc.cmdnargs", EXEC, 2),
    ("proc.cmdlenargs", EXEC, 11),
    ("proc.duration", STARTED, 5000),
    ("proc.ppid.duration", STARTED, 9000),
    ("proc.pid.ts", STARTED, STARTED.wall_ns - 5000),
    ("proc.ppid.ts", STARTED, STARTED.wall_ns - 9000),
    ("proc.vpid", EXEC, 7),
    ("proc.vpgid", EXEC, 7),
    ("proc.sid", EXEC, 1),
    ("proc.is_vpgid_leader", EXEC, True),
    ("proc.is_sid_leader", EXEC, False),
    ("proc.sname", EXEC, "nginx"),
    ("proc.vpid", ORPHAN, 77),  # on the host: its pid
    ("proc.vpid", execve("/usr/sbin/nginx", pid=4000), 1),
    ("proc.vpid", execve("/bin/true", pid=4999), None),  # gone, in a container
    ("thread.tid", EXEC, 4200),
    ("thread.ismain", EXEC, True),
    ("thread.cap_effective", EXEC, DOCKER_CAPS),
    ("thread.cap_permitted", EXEC, DOCKER_CAPS),
    ("thread.cap_inheritable", EXEC, ""),
    ("thread.cap_effective", execve("/bin/true", pid=4999, parent=proc_of(4100)), DOCKER_CAPS),
    ("proc.env", EXEC, "PATH=/bin HOME=/root"),
    ("proc.env[HOME]", EXEC, "/root"),
    ("proc.env[NOPE]", EXEC, None),
    # an exec the kernel described: its environment and pid as it started, not /proc's now
    ("proc.env", STARTED_WITH, "GLIBC_TUNABLES=x=1 \udcff=y"),
    ("proc.env[GLIBC_TUNABLES]", STARTED_WITH, "x=1"),
    ("proc.env[HOME]", STARTED_WITH, None),
    ("proc.env_too_large", STARTED_WITH, False),
    ("proc.env_too_large", execve("/bin/true", described=True, env_too_large=True), True),
    ("proc.env_too_large", file_event("openat", "/x"), None),  # of an exec only
    ("proc.vpid", STARTED_WITH, 3),
    ("proc.vpid", execve("/bin/true", pid=4999, described=True, vpid=9), 9),  # gone meanwhile
    ("proc.exe_ino", EXEC, os.stat(EXE_FILE).st_ino),
    ("proc.exe_ino.mtime", EXEC, os.stat(EXE_FILE).st_mtime_ns),
    ("proc.exe_ino.ctime", EXEC, os.stat(EXE_FILE).st_ctime_ns),
    ("proc.exe_ino.ctime_duration_proc_start", ORPHAN, None),
    ("user.homedir", APP, "/home/app"),
    ("user.shell", APP, "/bin/sh"),
    ("user.loginuid", EXEC, -1),
    ("user.loginuid", execve("/bin/true", pid=4999), -1),  # gone: the container's first one's
    ("user.loginname", EXEC, None),
    ("group.name", APP, "app"),
    ("group.name", EXEC, "root"),
    ("container.type", IN_DOCKER, "docker"),
    ("container.image.id", IN_DOCKER, "sha256:abc"),
    ("container.label[team]", IN_DOCKER, "data"),
    ("container.labels", IN_DOCKER, "team:data, tier"),
    ("k8s.pod.uid", IN_DOCKER, "u-1"),
    ("container.mounts", IN_DOCKER, "/etc/app:/srv/conf:ro:false:rprivate,"
     "/var/run/docker.sock:/var/run/docker.sock::true:"),
    ("container.mount[0]", IN_DOCKER, "/etc/app:/srv/conf:ro:false:rprivate"),
    ("container.mount.dest[/var/run/docker.sock]", IN_DOCKER, "/var/run/docker.sock"),
    ("container.mount.dest[/etc/*]", IN_DOCKER, "/srv/conf"),
    ("container.mount.dest[/proc*]", IN_DOCKER, None),
    ("container.mount.source[/srv/*]", IN_DOCKER, "/etc/app"),
    ("container.mount.mode[0]", IN_DOCKER, "ro"),
    ("container.mount.rdwr[1]", IN_DOCKER, "true"),
    ("container.mount.propagation[/etc/app]", IN_DOCKER, "rprivate"),
    ("container.mounts", EXEC, None),
    ("net.direction", flow("1.1.1.1", 53), "egress"),
    ("net.bytes", flow("1.1.1.1", 53, nbytes=5), 5),
    ("net.packets", flow("1.1.1.1", 53), 10),
    ("net.connections", dataclasses.replace(flow("172.17.0.9", 0, direction="ingress"),
                                            connections=7), 7),
    ("net.peer_names", flow("1.1.1.1", 53, names=("one.one",)), ("one.one",)),
    ("net.port_first_seen", dataclasses.replace(flow("172.17.0.2", 7000, direction="ingress"),
                                                port_first_seen=True), True),
    ("dns.qname", dns("WWW.Example.COM."), "www.example.com"),
    ("dns.qname_suffixes", dns("a.b.c"), ("a.b.c", "b.c", "c")),
    ("dns.qname_len", dns("a.b.c"), 5),
    ("dns.qname_labels", dns("a.b.c"), 3),
    ("dns.qname_longest_label", dns("abc.de"), 3),
    ("dns.qname_entropy", dns("aaaa.com"), 0.0),
    ("dns.qtype", dns("a.com", qtype="txt"), "TXT"),
    ("dns.rcode", dns("a.com", evt_type="dns_response", rcode="NXDOMAIN"), "NXDOMAIN"),
    ("dns.answers", dns("a.com", answers=("1.2.3.4",)), ("1.2.3.4",)),
    ("evt.is_open_write", open_write("/x"), True),
    ("evt.is_open_read", open_write("/x", flags=0o2), True),
    ("proc.is_exe_upper_layer", execve("/tmp/x", is_exe_upper_layer=True), True),
    ("proc.is_exe_from_memfd", execve("/memfd:x", is_exe_from_memfd=True), True),
    ("dns.qname", EXEC, None),
    ("proc.name", dns("a.com"), None),
    # the kernel's view (issue 12): resolved paths, identities, fd kinds, compat calls
    ("fd.nameraw", dataclasses.replace(open_write("/etc/shadow"), raw_path="/tmp/e/shadow"),
     "/tmp/e/shadow"),
    ("fd.nameraw", open_write("/y"), "/y"),
    ("fd.ino", dataclasses.replace(open_write("/y"), ino=42), 42),
    ("fd.dev", dataclasses.replace(open_write("/y"), dev=7), 7),
    ("fd.type", dataclasses.replace(open_write("/tmp/f"), file_mode=0o10644), "pipe"),
    ("fd.type", fd_placed("fcntl", "ipv4", addr="10.0.0.1", port=4444), "ipv4"),
    ("fd.typechar", fd_placed("dup2", "pipe", fd=1), "p"),
    ("fd.num", fd_placed("dup2", "pipe", fd=1), 1),
    ("fd.dip", fd_placed("dup3", "ipv6", addr="2001:db8::1", port=443), "2001:db8::1"),
    ("fd.name", fd_placed("dup3", "ipv4", addr="10.0.0.1", port=4444), "10.0.0.1:4444"),
    ("evt.arg.compat", dataclasses.replace(open_write("/x"), compat=True), True),
    ("evt.arg.compat", open_write("/x"), False),
    ("proc.is_container_runtime",
     file_event("openat", "/x", process=proc("/usr/sbin/runc", is_container_runtime=True)),
     True),
    ("proc.is_container_runtime", file_event("openat", "/x"), False),
    ("proc.is_container_init_child", EXEC, False),
    ("proc.is_container_init_child", execve("/bin/sh", parent=INIT), True),
    ("proc.stdio_wired_to_network",
     file_event("openat", "/x", process=proc("/bin/sh", stdio_wired=("sh",))), ("sh",)),
    ("proc.stdio_wired_to_network", file_event("openat", "/x"), None),
    ("fd.is_server", fd_placed("dup2", "ipv4", accepted=True), True),
    ("fd.is_server", fd_placed("dup2", "ipv4"), False),
    ("fd.is_server", fd_placed("dup2", "pipe"), None),
    ("fd.is_server", connect("10.0.0.9", 80, evt_type="accept"), True),
    ("evt.arg.io_uring", dataclasses.replace(open_write("/x"), io_uring=True), True),
    ("evt.is_open_setid", open_write("/x", mode=0o4755), True),
    ("evt.is_open_setid", open_write("/x", flags=0o1, mode=0o4755), False),  # no O_CREAT
]


@pytest.mark.parametrize(("name", "event", "expected"), CASES)
def test_field_values(name: str, event: Event, expected: Any) -> None:
    resolved = lookup(name)
    assert resolved is not None
    field, arg = resolved
    assert field.extractor(arg)(event) == expected


def test_every_field_is_tested_and_described() -> None:
    tested = {lookup(name)[0].name for name, _, _ in CASES}  # type: ignore[index]
    untested = set(FIELDS) - tested - {"evt.time", "container.start_ts", "container.duration"}
    assert not untested
    assert all(f.description and f.events for f in FIELDS.values())


def test_times() -> None:
    text = FIELDS["evt.time"].extract(EXEC)
    assert len(text) == len("13:04:05.123456789")
    assert text.endswith(f".{EXEC.wall_ns % 10**9:09d}")
    started = procfs.start_time_ns(4000)
    assert started is not None
    assert FIELDS["container.start_ts"].extract(EXEC) == started
    assert FIELDS["container.duration"].extract(EXEC) == EXEC.wall_ns - started


def test_container_start_falls_back_on_the_runtimes_time() -> None:
    """Once the container's first process is gone, its start is the runtime's (StartedAt)."""
    gone = dataclasses.replace(EXEC, container=dataclasses.replace(
        EXEC.container, pid=99999, started_ns=EXEC.wall_ns - 5 * 10**9))
    assert FIELDS["container.start_ts"].extract(gone) == EXEC.wall_ns - 5 * 10**9
    assert FIELDS["container.duration"].extract(gone) == 5 * 10**9
    unknown = dataclasses.replace(gone, container=dataclasses.replace(gone.container,
                                                                      started_ns=0))
    assert FIELDS["container.duration"].extract(unknown) is None


def test_a_threads_event_has_its_process_pid(fake_proc: FakeProc) -> None:
    """A thread's status names its own id in NSpid and its process's in NStgid: proc.vpid is
    the process's, as Falco's is."""
    task = fake_proc.process(4300, vpid=7) / "task" / "4301"
    task.mkdir(parents=True)
    task.joinpath("status").write_text("NStgid:\t4300\t7\nNSpid:\t4301\t8\n")
    event = file_event("openat", "/x", process=ProcessInfo(pid=4300))
    event.tid = 4301
    assert FIELDS["proc.vpid"].extract(event) == 7


def test_a_process_with_more_sockets_or_table_than_read_counts_as_holding_one(
        fake_proc: FakeProc, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_proc.process(4400, vpid=3, sockets=(7001, 7002))  # unix sockets: in no table
    assert procfs.holds_inet_socket(4400) is False
    procfs.forget()
    monkeypatch.setattr(procfs, "FDS_MAX", 1)  # more fds than it looks through
    assert procfs.holds_inet_socket(4400) is True
    procfs.forget()
    monkeypatch.setattr(procfs, "FDS_MAX", 16)
    monkeypatch.setattr(procfs, "NET_TABLE_MAX", 64)  # a table cut short
    assert procfs.holds_inet_socket(4400) is True
    assert procfs.holds_inet_socket(99999) is None  # gone


def test_proc_reads_are_bounded_and_never_raise(fake_proc: FakeProc, tmp_path: Path) -> None:
    hostile = rootfs(tmp_path / "hostile", "x" * (1 << 20) + "\nroot:x:0:0::/:/bin/sh\n", "")
    (hostile / "etc" / "group").unlink()
    (hostile / "etc" / "group").symlink_to("/etc/group")  # not followed out of the container
    fake_proc.process(4300, vpid=2, env=("A=" + "y" * 200_000,), rootfs=hostile)
    event = file_event("openat", "/x", uid=0, process=ProcessInfo(pid=4300))
    event.gid = 4
    assert FIELDS["group.name"].extract(event) is None
    assert FIELDS["proc.env"].extract(event) == ""  # cut at 64 KiB: no whole variable
    assert procfs.userdb("c1", [4300]).users == {}  # the passwd cut at 256 KiB names no one
    gone = file_event("openat", "/x", process=ProcessInfo(pid=99999),
                      container=dataclasses.replace(CONTAINER, pid=0))
    for name in ("proc.vpid", "thread.cap_effective", "user.loginuid", "proc.env",
                 "proc.exe_ino", "proc.sname"):
        assert FIELDS[name].extract(gone) is None


def test_docs_field_table_is_the_registry() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "rules.md").read_text()
    table = doc.split("<!-- fields:begin -->\n", 1)[1].split("\n<!-- fields:end -->", 1)[0]
    assert table == markdown_table(), "run scripts/gen-fields-doc.sh"
    assert all(f"`{name}" in table for name in FIELDS)


def test_format_fields_lists_every_field() -> None:
    text = format_fields()
    assert all(name in text for name in FIELDS)
    assert "proc.aname[N]" in text and "evt.arg.<name>" in text and "proc.env[KEY]" in text
    assert "cauditd only" in text and "Falco" in text


@pytest.mark.parametrize("name", ["proc.nme", "proc.aname[x]", "evt.arg.", "proc.name[1]"])
def test_unknown_names(name: str) -> None:
    assert lookup(name) is None
