"""Typed events: what the probes saw, decoded once at the boundary.

Nothing past the probe loaders touches ctypes or raw bytes: the decoders turn kernel records into
these dataclasses, the rule engine reads their attributes through the field registry.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import ClassVar

HOST_ID = "host"
COMM_LEN = 15  # the kernel's task comm holds 15 characters and a NUL


@dataclass(frozen=True, slots=True)
class ContainerMount:
    """A mount of a container as its runtime describes it: host source, container destination."""

    source: str
    dest: str
    mode: str = ""
    rw: bool = True
    propagation: str = ""


@dataclass(slots=True, kw_only=True, eq=False)
class ContainerInfo:
    """A container as the runtime describes it; `id` is the full id, or "host".

    One object per container, shared by its events and updated in place when the runtime's
    metadata arrives (so it compares by identity)."""

    id: str
    cgroup_id: int = 0
    name: str = ""
    image: str = ""
    image_id: str = ""
    runtime: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    privileged: bool = False
    pid: int = 0
    started_ns: int = 0
    mounts: tuple[ContainerMount, ...] = ()

    @property
    def short_id(self) -> str:
        return self.id if self.id == HOST_ID else self.id[:12]

    @property
    def is_host(self) -> bool:
        return self.id == HOST_ID

    @property
    def image_repository(self) -> str:
        image = self.image.split("@", 1)[0]
        slash = image.rfind("/")
        colon = image.rfind(":")
        return image[:colon] if colon > slash else image

    @property
    def image_tag(self) -> str:
        image = self.image.split("@", 1)[0]
        slash = image.rfind("/")
        colon = image.rfind(":")
        return image[colon + 1 :] if colon > slash else ""

    @property
    def pod_name(self) -> str:
        return self.labels.get("io.kubernetes.pod.name", "")

    @property
    def pod_namespace(self) -> str:
        return self.labels.get("io.kubernetes.pod.namespace", "")


HOST = ContainerInfo(id=HOST_ID, name="host", runtime="host")


@dataclass(frozen=True, slots=True)
class StdioFd:
    """What one of fds 0-2 is: Falco's fd.type ("pipe", "file", "ipv4", ...) and, for pipes and
    FIFOs, the inode that names the pipe (both ends of a pipe share it); for a socket, its
    inode (fds holding one socket share it)."""

    kind: str
    pipe: tuple[int, int] | None = None  # (device, inode) of a pipe or FIFO
    socket: int = 0  # inode of a socket


@dataclass(slots=True, kw_only=True, eq=False)
class ProcessInfo:
    """One process as the process table knows it; `parent` links up the tree."""

    pid: int
    ppid: int = 0
    exe: str = ""
    args: tuple[str, ...] = ()
    comm: str = ""
    cwd: str = ""
    uid: int = 0
    gid: int = 0
    tty: int = 0
    start_ns: int = 0
    container_id: str = HOST_ID
    is_exe_upper_layer: bool = False
    is_exe_from_memfd: bool = False
    is_container_runtime: bool = False  # the host's runtime binary (runtime_binaries.py)
    exe_known: bool = False  # an event named the executable by identity (decides the above)
    # the program a directly executed dynamic loader, or busybox, runs (proctable.program_name)
    exe_name: str = ""
    stdio_wired: tuple[str, ...] = ()  # names of shells wired to the network with it (pipes.py)
    stdio: tuple[StdioFd, ...] = ()  # fds 0-2 at its last exec, when the kernel told
    parent_inet: bool = False  # its parent held an IPv4/IPv6 socket at its exec (the kernel's)
    parent: ProcessInfo | None = None

    @property
    def name(self) -> str:
        """Falco's proc.name: the kernel's comm (15 characters at most), else the executable's
        basename cut as the kernel would; for a program run by the dynamic loader
        (`ld.so /bin/nc`) or a busybox applet (`busybox sh`), the program's name (`exe_name`)."""
        return self.exe_name or self.comm or self.exe.rsplit("/", 1)[-1][:COMM_LEN]

    @property
    def cmdline(self) -> str:
        return " ".join((self.name, *self.args[1:])) if self.args else self.name

    def ancestor(self, level: int) -> ProcessInfo | None:
        """The ancestor `level` generations up (1 = parent), as Falco's proc.aname[N]."""
        proc: ProcessInfo | None = self
        for _ in range(level):
            if proc is None:  # past the root: a rule may ask for any depth, even 10**11
                break
            proc = proc.parent
        return proc

    def ancestors(self, limit: int = 16) -> list[ProcessInfo]:
        chain: list[ProcessInfo] = []
        proc = self.parent
        while proc is not None and len(chain) < limit:
            chain.append(proc)
            proc = proc.parent
        return chain


@dataclass(slots=True, kw_only=True)
class Event:
    """Base of every event: its type (Falco's evt.type), kernel time and container."""

    source: ClassVar[str] = ""
    type: str
    ts_ns: int
    container: ContainerInfo = HOST

    @property
    def wall_ns(self) -> int:
        """Wall-clock time of the event (the kernel stamps CLOCK_MONOTONIC)."""
        return self.ts_ns + _MONO_TO_WALL_NS


def _mono_to_wall_ns() -> int:
    return time.time_ns() - time.monotonic_ns()


_MONO_TO_WALL_NS = _mono_to_wall_ns()


@dataclass(slots=True, kw_only=True)
class SyscallEvent(Event):
    """An event of the syscall source: a process in a cgroup did something.

    `args` holds the syscall's decoded arguments by name (Falco's evt.arg.*) for the kinds that
    have no typed subclass (ptrace, setns, unshare, mount, capset, bpf, memfd_create, ...).
    """

    source: ClassVar[str] = "syscall"
    cgroup_id: int = 0
    pid: int = 0
    tid: int = 0
    uid: int = 0
    gid: int = 0
    comm: str = ""
    ret: int = 0
    args: dict[str, int | str] = field(default_factory=dict)
    process: ProcessInfo | None = None
    compat: bool = False  # made through the 32-bit entry (int 0x80), numbers mapped to x86_64
    io_uring: bool = False  # submitted through an io_uring ring, not a syscall
    # The executable by identity, as the kernel saw it (0: unknown): of an exec, the new one.
    exe_ino: int = 0
    exe_dev: int = 0
    exe_foreign_mnt_ns: bool = False  # it lives on a mount of another mount namespace


@dataclass(slots=True, kw_only=True)
class ExecEvent(SyscallEvent):
    """A successful execve/execveat (sched_process_exec)."""

    exe: str = ""
    argv: tuple[str, ...] = ()
    cwd: str = ""
    tty: int = 0
    is_exe_upper_layer: bool = False
    is_exe_from_memfd: bool = False
    filename: str = ""  # the path the exec was asked for, when `exe` is the kernel's resolution
    ns_pid: int = 0  # pid in the container's pid namespace, from the kernel (0: host, unknown)
    # The process as it started, from the kernel (probes/process.c) when `described`: its pid
    # in its own pid namespace, controlling terminal and (when not empty) cwd; `environ` is
    # its environment block as far as the kernel read it (whole up to 2 KiB; past that, the
    # variables the rules name), else None; `env_too_large` when the kernel could not look
    # through all of it for them (probes/process.c).
    described: bool = False
    vpid: int = 0
    environ: bytes | None = None
    env_too_large: bool = False
    exe_layer_known: bool = False  # the exe is on an overlayfs and the kernel told its layer
    is_exe_unlinked: bool = False  # no name on disk: O_TMPFILE, deleted, memfd
    stdio: tuple[StdioFd, ...] = ()  # fds 0-2 at exec, when the kernel told
    # the kernel saw the FIFOs it had opened by path still held past its stdio after the exec
    fifos_kept: bool = False
    # an IPv4/IPv6 socket on its stdio, and the kernel saw its parent hold one too at the exec
    parent_inet: bool = False
    # its stdin (stdout) is a pipe, and the kernel saw its parent hold the end that writes
    # into it (reads from it) at the exec
    parent_feeds: bool = False
    parent_drains: bool = False


@dataclass(slots=True, kw_only=True)
class ForkEvent(SyscallEvent):
    """fork/vfork/clone/clone3 seen by sched_process_fork: `pid` is the parent."""

    child_pid: int = 0
    child_tid: int = 0


@dataclass(slots=True, kw_only=True)
class ExitEvent(SyscallEvent):
    """A process (thread group leader) exited; `ret` is the exit status."""


@dataclass(slots=True, kw_only=True)
class FileEvent(SyscallEvent):
    """open/openat/openat2/creat, unlink, rename, mkdir, symlink, link, chmod and chown family.

    `path` is the file acted on (for rename/link/symlink, the source: Falco's oldpath/target);
    `target` is the second path (the new name). `flags` are open flags, `mode` the mode argument.
    """

    path: str = ""
    target: str = ""
    dirfd: int = -100
    flags: int = 0
    mode: int = 0
    owner_uid: int = -1
    owner_gid: int = -1
    raw_path: str = ""  # `path` as the process wrote it (Falco's fd.nameraw)
    base: str = ""  # the directory a relative path was relative to, resolved by the kernel
    resolved: bool = False  # `path` is the file the kernel opened (symlinks, dirfd, cwd, ..)
    file_mode: int = 0  # the opened inode's type and permission bits (0: unknown)
    ino: int = 0
    dev: int = 0


@dataclass(slots=True, kw_only=True)
class NetSyscallEvent(SyscallEvent):
    """connect, bind, listen, accept/accept4, sendto, sendmsg, sendmmsg: the socket address.

    For connect/sendto the address is the peer (fd.dip/fd.dport); for bind/listen/accept the
    local one (fd.sip/fd.sport); accept's `peer_*` is the connecting client when known.
    """

    fd: int = -1
    family: int = 0
    sock_type: int = 0
    addr: str = ""
    port: int = 0
    peer_addr: str = ""
    peer_port: int = 0


@dataclass(slots=True, kw_only=True)
class FdEvent(SyscallEvent):
    """dup, dup2, dup3, fcntl(F_DUPFD*): a descriptor placed on `fd` (0, 1 or 2).

    `kind` is what the fd is, as Falco's fd.type says it ("ipv4", "ipv6", "unix", "file",
    "pipe", "fifo", "directory", "char", "block", "link", or "" when unknown); for a socket,
    `addr`/`port` are its peer and `accepted` tells the server's end of a connection.
    """

    fd: int = -1
    kind: str = ""
    addr: str = ""
    port: int = 0
    accepted: bool = False


@dataclass(slots=True, kw_only=True)
class CgroupEvent(Event):
    """The kernel made a cgroup (cgroup_mkdir): for the container registry, never for rules."""

    source: ClassVar[str] = "internal"
    cgroup_id: int = 0
    path: str = ""


@dataclass(slots=True, kw_only=True)
class NetworkEvent(Event):
    """An event of the network source, seen on a container's host-side veth."""

    source: ClassVar[str] = "network"
    ifindex: int = 0
    direction: str = ""  # "egress" (from the container) or "ingress" (to it)
    l4proto: str = ""  # "tcp", "udp", "icmp", "icmpv6", or the number as text
    sip: str = ""
    sport: int = 0
    dip: str = ""
    dport: int = 0


@dataclass(slots=True, kw_only=True)
class FlowEvent(NetworkEvent):
    """type "flow_new" (first packet) or "flow_end" (idle or final totals)."""

    packets: int = 0
    bytes: int = 0
    tcp_flags: int = 0
    first_ns: int = 0
    last_ns: int = 0
    peer_names: tuple[str, ...] = ()
    port_first_seen: bool = False  # ingress flow_new: see cauditd.network.listen
    connections: int = 0  # flow_end of an aggregate (a client's connections to a served port)


@dataclass(slots=True, kw_only=True)
class DnsEvent(NetworkEvent):
    """type "dns_query" or "dns_response", parsed from a DNS packet."""

    qname: str = ""
    qtype: str = ""
    rcode: str = ""
    dns_id: int = 0
    answers: tuple[str, ...] = ()
    ttls: tuple[int, ...] = ()


def event_to_json(event: Event) -> dict[str, object]:
    """A JSON-ready view of an event, for `cauditd events` and debugging rules."""
    doc: dict[str, object] = {"source": event.source}
    for name in event.__dataclass_fields__:
        if name in ("container", "process"):
            continue
        value = getattr(event, name)
        if isinstance(value, tuple):
            value = [dataclasses.asdict(v) if isinstance(v, StdioFd) else v for v in value]
        doc[name] = value
    c = event.container
    doc["container"] = {"id": c.short_id, "full_id": c.id, "name": c.name, "image": c.image}
    proc = getattr(event, "process", None)
    if proc is not None:
        doc["process"] = {
            "pid": proc.pid,
            "exe": proc.exe,
            "cmdline": proc.cmdline,
            "parents": [{"pid": p.pid, "name": p.name} for p in proc.ancestors(4)],
        }
    return doc
