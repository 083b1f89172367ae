"""Synthetic events for rule tests, built from cauditd.events dataclasses."""

from __future__ import annotations

from typing import Any

from cauditd.events import (
    ContainerInfo,
    DnsEvent,
    ExecEvent,
    FdEvent,
    FileEvent,
    FlowEvent,
    NetSyscallEvent,
    ProcessInfo,
    SyscallEvent,
)

CONTAINER = ContainerInfo(
    id="c0ffee" * 10 + "abcd", name="web", image="registry.local/team/nginx:1.25", pid=4000,
    labels={"io.kubernetes.pod.name": "web-0", "io.kubernetes.pod.namespace": "prod"},
)
TS = 1_000_000_000

RUNC = ProcessInfo(pid=3990, exe="/usr/bin/containerd-shim-runc-v2", comm="containerd-shim",
                   args=("containerd-shim-runc-v2",))
INIT = ProcessInfo(pid=4000, ppid=3990, exe="/usr/sbin/nginx", args=("nginx", "-g",
                   "daemon off;"), parent=RUNC, container_id=CONTAINER.id)
WORKER = ProcessInfo(pid=4001, ppid=4000, exe="/usr/sbin/nginx", args=("nginx",), parent=INIT,
                     container_id=CONTAINER.id)
BASH = ProcessInfo(pid=4100, ppid=4000, exe="/bin/bash", args=("bash",), parent=INIT,
                   container_id=CONTAINER.id)


def proc(exe: str, *args: str, pid: int = 4200, parent: ProcessInfo | None = BASH,
         **kw: Any) -> ProcessInfo:
    """A process running `exe` with argv (argv[0] = basename unless given)."""
    argv = args or (exe.rsplit("/", 1)[-1],)
    return ProcessInfo(pid=pid, ppid=parent.pid if parent else 0, exe=exe, args=argv,
                       parent=parent, container_id=CONTAINER.id, **kw)


def execve(exe: str, *argv: str, parent: ProcessInfo | None = BASH, pid: int = 4200,
           container: ContainerInfo = CONTAINER, **kw: Any) -> ExecEvent:
    """A successful execve of `exe` with `argv` (default: its basename)."""
    args = argv or (exe.rsplit("/", 1)[-1],)
    process = ProcessInfo(pid=pid, ppid=parent.pid if parent else 0, exe=exe, args=args,
                          parent=parent, container_id=container.id)
    return ExecEvent(type="execve", ts_ns=TS, container=container, pid=pid, tid=pid,
                     comm=exe.rsplit("/", 1)[-1][:15], exe=exe, argv=args, process=process, **kw)


def file_event(evt_type: str, path: str, *, target: str = "", flags: int = 0, mode: int = 0,
               process: ProcessInfo | None = None, ret: int = 3,
               container: ContainerInfo = CONTAINER, uid: int = 0) -> FileEvent:
    """A file syscall by `process` (default: a bash in the container)."""
    process = process or proc("/bin/bash", "bash")
    return FileEvent(type=evt_type, ts_ns=TS, container=container, pid=process.pid,
                     tid=process.pid, comm=process.name, path=path, target=target, flags=flags,
                     mode=mode, process=process, ret=ret, uid=uid)


O_WRONLY, O_RDWR, O_CREAT, O_TRUNC = 0o1, 0o2, 0o100, 0o1000


def open_read(path: str, **kw: Any) -> FileEvent:
    return file_event("openat", path, **kw)


def open_write(path: str, flags: int = O_WRONLY | O_CREAT, **kw: Any) -> FileEvent:
    return file_event("openat", path, flags=flags, **kw)


def syscall(evt_type: str, args: dict[str, int | str] | None = None, *,
            process: ProcessInfo | None = None, container: ContainerInfo = CONTAINER,
            ret: int = 0) -> SyscallEvent:
    """A plain syscall event with `args` (ptrace, setns, socket, dup2, ...)."""
    process = process or proc("/usr/bin/python3", "python3", "x.py")
    return SyscallEvent(type=evt_type, ts_ns=TS, container=container, pid=process.pid,
                        tid=process.pid, comm=process.name, args=dict(args or {}),
                        process=process, ret=ret)


def connect(addr: str, port: int, *, evt_type: str = "connect", family: int = 2,
            process: ProcessInfo | None = None, container: ContainerInfo = CONTAINER,
            peer: tuple[str, int] = ("", 0)) -> NetSyscallEvent:
    """connect/sendto/bind/accept to or on addr:port (IPv4 TCP unless told)."""
    process = process or proc("/usr/bin/curl", "curl", "http://x")
    return NetSyscallEvent(type=evt_type, ts_ns=TS, container=container, pid=process.pid,
                           tid=process.pid, comm=process.name, fd=5, family=family,
                           sock_type=1, addr=addr, port=port, peer_addr=peer[0],
                           peer_port=peer[1], process=process)


def flow(dip: str, dport: int, *, evt_type: str = "flow_new", proto: str = "tcp",
         direction: str = "egress", ts_ns: int = TS, nbytes: int = 1000,
         container: ContainerInfo = CONTAINER, names: tuple[str, ...] = ()) -> FlowEvent:
    return FlowEvent(type=evt_type, ts_ns=ts_ns, container=container, direction=direction,
                     l4proto=proto, sip="172.17.0.2", sport=40000, dip=dip, dport=dport,
                     bytes=nbytes, packets=10, peer_names=names)


def dns(qname: str, *, evt_type: str = "dns_query", qtype: str = "A", rcode: str = "",
        ts_ns: int = TS, answers: tuple[str, ...] = ()) -> DnsEvent:
    return DnsEvent(type=evt_type, ts_ns=ts_ns, container=CONTAINER, direction="egress",
                    l4proto="udp", sip="172.17.0.2", sport=5353, dip="10.0.0.2", dport=53,
                    qname=qname, qtype=qtype, rcode=rcode, answers=answers)


def fd_placed(evt_type: str, kind: str, *, fd: int = 0, addr: str = "", port: int = 0,
              accepted: bool = False, process: ProcessInfo | None = None,
              container: ContainerInfo = CONTAINER) -> FdEvent:
    """A dup/dup2/dup3/fcntl(F_DUPFD) placing an fd of `kind` ("ipv4", "pipe"...) on `fd`."""
    process = process or proc("/bin/sh", "sh")
    return FdEvent(type=evt_type, ts_ns=TS, container=container, pid=process.pid,
                   tid=process.pid, comm=process.name, ret=fd, fd=fd, kind=kind, addr=addr,
                   port=port, accepted=accepted, process=process,
                   args={"oldfd": 5, "newfd": fd,
                         "oldfd_is_socket": int(kind in ("ipv4", "ipv6", "unix"))})
