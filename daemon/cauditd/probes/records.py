"""Decoders from the probes' C record layouts to typed events (the only place that sees bytes).

Each layout mirrors a struct in probes/*.c; the first u32 after the timestamps is the kind.
Paths come out as the process passed them; making them absolute needs the process's cwd and
is done by the process table (cauditd.proctable).
"""

from __future__ import annotations

import functools
import ipaddress
import struct
from collections.abc import Callable

from cauditd import text
from cauditd.events import (
    CgroupEvent,
    Event,
    ExecEvent,
    ExitEvent,
    FileEvent,
    ForkEvent,
    NetSyscallEvent,
    SyscallEvent,
)
from cauditd.probes import catalog

Record = bytes | memoryview  # one record's bytes; the mmap reader passes views of its batch copy

# struct event_header: ts_ns, cgroup_id, kind, pid, tid, uid, gid, _pad, comm[16]
HEADER = struct.Struct("<QQIIIIII16s")
KIND_OFFSET = 16

EVENT_EXEC = 1
EVENT_SYSCALL = 2
EVENT_FORK = 3
EVENT_EXIT = 4
EVENT_CGROUP = 5

ARGV_MAX = 16
ARG_LEN = 128
EXEC_FROM_MEMFD = 1
SOCKET_KNOWN = 0x80000000
AT_FDCWD = -100
AF_UNIX, AF_INET, AF_INET6 = 1, 2, 10
CREAT_FLAGS = 0o1101  # O_CREAT | O_WRONLY | O_TRUNC, what creat() means

EXEC = struct.Struct(HEADER.format + f"IIII256s{ARGV_MAX * ARG_LEN}s")
FORK = struct.Struct(HEADER.format + "IIQII")
EXIT = struct.Struct(HEADER.format + "iI")
CGROUP = struct.Struct(HEADER.format + "256s")
SYSCALL = struct.Struct(HEADER.format + "IIq6QQII256s256s")

_FORK_TYPES = {0: "clone", 56: "clone", 57: "fork", 58: "vfork", 435: "clone3"}
_SIGNED_ARGS = frozenset(
    ("fd", "oldfd", "newfd", "uid", "gid", "ruid", "euid", "suid", "rgid", "egid", "sgid", "pid",
     "dirfd", "domain", "type", "protocol", "nstype", "cmd", "request", "olddirfd", "newdirfd")
)  # fmt: skip
_NO_ARGS = frozenset(("capset",))


def cstr(raw: bytes) -> str:
    """A NUL-terminated C string as text (bytes that are not UTF-8 kept as surrogate escapes,
    see cauditd.text)."""
    end = raw.find(b"\0")
    return text.decode(raw if end < 0 else raw[:end], "record")


def s32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def decode_exec(raw: Record) -> ExecEvent:
    ts, cgroup_id, _k, pid, tid, uid, gid, _p, comm, _old_pid, argc, flags, _p2, filename, argv = (
        EXEC.unpack_from(raw)
    )
    exe = cstr(filename)
    args = tuple(cstr(argv[i * ARG_LEN : (i + 1) * ARG_LEN]) for i in range(min(argc, ARGV_MAX)))
    return ExecEvent(
        type="execve",
        ts_ns=ts,
        cgroup_id=cgroup_id,
        pid=pid,
        tid=tid,
        uid=uid,
        gid=gid,
        comm=cstr(comm),
        exe=exe,
        argv=args,  # empty when the kernel could not read it: the process table fills it in
        is_exe_from_memfd=bool(flags & EXEC_FROM_MEMFD) or exe.startswith("/memfd:"),
    )


def decode_fork(raw: Record) -> ForkEvent:
    ts, cgroup_id, _k, pid, tid, uid, gid, _p, comm, parent, child, flags, nr, _p2 = (
        FORK.unpack_from(raw)
    )
    return ForkEvent(
        type=_FORK_TYPES.get(nr, "clone"),
        ts_ns=ts,
        cgroup_id=cgroup_id,
        pid=pid,
        tid=tid,
        uid=uid,
        gid=gid,
        comm=cstr(comm),
        ret=child,
        child_pid=child,
        child_tid=child,
        args={"flags": flags, "parent_tid": parent},
    )


def decode_exit(raw: Record) -> ExitEvent:
    ts, cgroup_id, _k, pid, tid, uid, gid, _p, comm, status, _p2 = EXIT.unpack_from(raw)
    return ExitEvent(
        type="procexit",
        ts_ns=ts,
        cgroup_id=cgroup_id,
        pid=pid,
        tid=tid,
        uid=uid,
        gid=gid,
        comm=cstr(comm),
        ret=status,
    )


def sockaddr(raw: bytes) -> tuple[int, str, int]:
    """(family, address, port) of a struct sockaddr; unix paths as text, "@name" if abstract."""
    if len(raw) < 2:
        return 0, "", 0
    (family,) = struct.unpack_from("<H", raw)
    if family == AF_INET and len(raw) >= 8:
        return family, str(ipaddress.IPv4Address(raw[4:8])), struct.unpack_from(">H", raw, 2)[0]
    if family == AF_INET6 and len(raw) >= 24:
        return family, str(ipaddress.IPv6Address(raw[8:24])), struct.unpack_from(">H", raw, 2)[0]
    if family == AF_UNIX:
        path = raw[2:]
        if path[:1] == b"\0":
            return family, "@" + cstr(path[1:]), 0
        return family, cstr(path), 0
    return family, "", 0


def decode_syscall(raw: Record) -> SyscallEvent | None:
    fields = SYSCALL.unpack_from(raw)
    ts, cgroup_id, _k, pid, tid, uid, gid, _p, comm, nr, sock_info, ret = fields[:12]
    a0, a1, a2, a3, a4, a5, deref, addr_len, _p2, path1, tail = fields[12:]
    spec = catalog.BY_NR.get(nr)
    if spec is None:
        return None
    a = (a0, a1, a2, a3, a4, a5)
    common = {
        "type": spec.name, "ts_ns": ts, "cgroup_id": cgroup_id, "pid": pid, "tid": tid,
        "uid": uid, "gid": gid, "comm": cstr(comm), "ret": ret,
    }  # fmt: skip
    if spec.family == "file":
        return _file_event(spec.name, a, deref, cstr(path1), cstr(tail), common)
    if spec.family == "net":
        return _net_event(spec.name, a, sock_info, tail[:addr_len], common)
    return SyscallEvent(**common, args=_args(spec, a, path1, tail, sock_info))


def _args(
    spec: catalog.Syscall, a: tuple[int, ...], path1: bytes, tail: bytes, sock_info: int
) -> dict[str, int | str]:
    if spec.name in _NO_ARGS:
        return {}
    args: dict[str, int | str] = {
        name: s32(a[i]) if name in _SIGNED_ARGS else a[i] for i, name in enumerate(spec.args)
    }
    if spec.name == "mount":
        args.update(source=cstr(tail[:192]), target=cstr(path1), fstype=cstr(tail[192:]))
        args.pop("data", None)
    elif spec.name in ("umount2", "chdir"):
        args[spec.args[0]] = cstr(path1)
    elif spec.name == "memfd_create":
        args["name"] = cstr(path1)
    elif spec.name.startswith("dup"):
        args["oldfd_is_socket"] = 1 if sock_info & SOCKET_KNOWN else 0
    return args


@functools.cache
def _arg_index(name: str) -> dict[str, int]:
    """Position of each named argument of a syscall (built once per syscall, not per record)."""
    return {arg: i for i, arg in enumerate(catalog.BY_NAME[name].args)}


def _file_event(
    name: str, a: tuple[int, ...], deref: int, path: str, second: str, common: dict[str, object]
) -> FileEvent:
    ev = FileEvent(**common, path=path, target=second)  # type: ignore[arg-type]
    index = _arg_index(name)
    for arg in ("dirfd", "olddirfd", "fd"):
        if arg in index:
            ev.dirfd = s32(a[index[arg]])
    if "flags" in index:
        ev.flags = a[index["flags"]]
    if "mode" in index:
        ev.mode = a[index["mode"]]
    if "uid" in index:
        ev.owner_uid, ev.owner_gid = s32(a[index["uid"]]), s32(a[index["gid"]])
    if name == "openat2":
        ev.flags = deref
    elif name == "creat":
        ev.flags = CREAT_FLAGS
    if "newdirfd" in index:
        ev.args = {"newdirfd": s32(a[index["newdirfd"]])}
    return ev


def _net_event(
    name: str, a: tuple[int, ...], sock_info: int, addr: bytes, common: dict[str, object]
) -> NetSyscallEvent:
    family, host, port = sockaddr(addr)
    known_family = (sock_info >> 16) & 0x7FFF if sock_info & SOCKET_KNOWN else 0
    ev = NetSyscallEvent(
        **common,  # type: ignore[arg-type]
        fd=s32(a[0]),
        family=family or known_family,
        sock_type=sock_info & 0xFF if sock_info & SOCKET_KNOWN else 0,
    )
    if name in ("accept", "accept4"):
        ev.fd = ev.ret if ev.ret >= 0 else ev.fd
        ev.peer_addr, ev.peer_port = host, port
        ev.args = {"listen_fd": s32(a[0])}
    else:
        ev.addr, ev.port = host, port
    if name == "listen":
        ev.args = {"backlog": s32(a[1])}
    return ev


def decode_cgroup(raw: Record) -> CgroupEvent:
    ts, cgroup_id, *_header, path = CGROUP.unpack_from(raw)
    return CgroupEvent(type="cgroup_mkdir", ts_ns=ts, cgroup_id=cgroup_id, path=cstr(path))


DECODERS: dict[int, Callable[[Record], Event | None]] = {
    EVENT_CGROUP: decode_cgroup,
    EVENT_EXEC: decode_exec,
    EVENT_SYSCALL: decode_syscall,
    EVENT_FORK: decode_fork,
    EVENT_EXIT: decode_exit,
}


def decode(raw: Record) -> Event | None:
    """Decode one record by its kind; unknown kinds are skipped (None)."""
    (kind,) = struct.unpack_from("<I", raw, KIND_OFFSET)
    decoder = DECODERS.get(kind)
    return decoder(raw) if decoder is not None else None
