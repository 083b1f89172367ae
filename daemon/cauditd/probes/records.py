"""Decoders from the probes' C record layouts to typed events (the only place that sees bytes).

Each layout mirrors a struct in probes/*.c; the first u32 after the timestamps is the kind.
An open's path is the file the kernel opened when the probe could resolve it (probes/opens.h);
other paths come out as the process passed them, with the directory a relative one was
relative to when the kernel told it (`base`); the process table makes the rest absolute.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib
import ipaddress
import logging
import re
import struct
from collections.abc import Callable
from pathlib import Path

from cauditd import text
from cauditd.events import (
    CgroupEvent,
    Event,
    ExecEvent,
    ExitEvent,
    FdEvent,
    FileEvent,
    ForkEvent,
    NetSyscallEvent,
    StdioFd,
    SyscallEvent,
)
from cauditd.probes import catalog

log = logging.getLogger(__name__)

Record = bytes | memoryview  # one record's bytes; the mmap reader passes views of its batch copy
Decoder = Callable[[Record], Event | None]

# struct event_header: ts_ns, cgroup_id, kind, pid, tid, uid, gid, _pad, comm[16]
HEADER = struct.Struct("<QQIIIIII16s")
KIND_OFFSET = 16
_KIND = struct.Struct("<I")

EVENT_EXEC = 1
EVENT_SYSCALL = 2
EVENT_FORK = 3
EVENT_EXIT = 4
EVENT_CGROUP = 5
EVENT_OPEN = 6

ARGV_MAX = 16
ARG_LEN = 128
EXEC_FROM_MEMFD = 1
SOCKET_KNOWN = 0x80000000
SOCKET_ACCEPTED = 0x40000000
SC_COMPAT, SC_BASE, SC_IO_URING = 1, 2, 8  # syscall_record.info
OPEN_RESOLVED, OPEN_BASE, OPEN_TRUNCATED, OPEN_DETACHED, OPEN_COMPAT = 1, 2, 4, 8, 16
OPEN_IO_URING = 32
AT_FDCWD = -100
AF_UNIX, AF_INET, AF_INET6 = 1, 2, 10
CREAT_FLAGS = 0o1101  # O_CREAT | O_WRONLY | O_TRUNC, what creat() means

STDIO = struct.Struct("<IIQI4x")  # struct stdio_fd: i_mode, device, inode, sock_info
# process.c is built with these: the environment bytes an exec record holds, and the variables
# the rules name found past them (slots, and bytes of each)
ENV_CAPTURE, ENV_FOUND_SLOTS, ENV_FOUND_LEN = 2048, 4, 256
EXEC = struct.Struct(HEADER.format + f"IIIIQIIIIII{3 * STDIO.size}s256s512s256s"
                     f"{ARGV_MAX * ARG_LEN}s{ENV_CAPTURE}s{ENV_FOUND_SLOTS * ENV_FOUND_LEN}s")
EXE_RESOLVED, EXE_FOREIGN_MNT_NS, EXE_TRUNCATED, EXE_DETACHED, EXE_UNLINKED = 1, 2, 4, 8, 16
EXE_CWD, EXE_ENV, EXE_OVERLAY, EXE_UPPER, EXE_ENV_WALKED, EXE_ENV_UNWALKED = (
    32, 64, 128, 256, 512, 1024)
EXE_FIFOS_KEPT, EXE_PARENT_INET, EXE_PARENT_FEEDS, EXE_PARENT_DRAINS = 2048, 4096, 8192, 16384
FORK = struct.Struct(HEADER.format + "IIQIIQII")
EXIT = struct.Struct(HEADER.format + "iI")
CGROUP = struct.Struct(HEADER.format + "256s")
SYSCALL = struct.Struct(HEADER.format + "IIq6QQIIIIQII256s256s256s")
OPEN = struct.Struct(HEADER.format + "IIqqQQQII256s512s")
# Falco's fd.type names by the inode's S_IFMT bits (sockets are named by their family; pipes
# and FIFOs are both "pipe", devices and links "file").
FILE_KINDS = {0o010000: "pipe", 0o020000: "file", 0o040000: "directory", 0o060000: "file",
              0o100000: "file", 0o120000: "file"}
S_IFMT, S_IFSOCK = 0o170000, 0o140000
AF_NETLINK = 16
SOCKET_KINDS = {AF_UNIX: "unix", AF_INET: "ipv4", AF_INET6: "ipv6", AF_NETLINK: "netlink"}

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


_COMMS: dict[bytes, str] = {}
COMM_CACHE = 4096  # distinct process names kept decoded; past that the cache starts over


def comm_text(raw: bytes) -> str:
    """A record's 16-byte comm (NUL-padded by the kernel) as text: a busy process sends the
    same bytes in every record, decoded once. Names that are not ASCII are decoded each time
    (so cauditd.text counts each undecodable one) and not kept; the cache is bounded."""
    found = _COMMS.get(raw)
    if found is None:
        found = cstr(raw)
        if raw.isascii():
            if len(_COMMS) >= COMM_CACHE:
                _COMMS.clear()
            _COMMS[raw] = found
    return found


def s32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def decode_exec(raw: Record) -> ExecEvent:
    """An exec: the path it was asked for, and with the kernel's layout the file it runs."""
    fields = EXEC.unpack_from(raw)
    ts, cgroup_id, _k, pid, tid, uid, gid, _p, comm, _old_pid, argc, flags = fields[:12]
    exe_flags, exe_ino, exe_dev, ns_pid, vpid, tty, env_len, found, stdio = fields[12:21]
    filename, resolved, cwd, argv, env, env_found = fields[21:]
    asked = cstr(filename)
    exe = asked
    if exe_flags & EXE_RESOLVED and not exe_flags & EXE_TRUNCATED:
        exe = cstr(resolved)
    args = tuple(cstr(argv[i * ARG_LEN : (i + 1) * ARG_LEN]) for i in range(min(argc, ARGV_MAX)))
    return ExecEvent(
        type="execve",
        ts_ns=ts,
        cgroup_id=cgroup_id,
        pid=pid,
        tid=tid,
        uid=uid,
        gid=gid,
        comm=comm_text(comm),
        exe=exe,
        filename=asked,
        argv=args,  # empty when the kernel could not read it: the process table fills it in
        is_exe_from_memfd=bool(flags & EXEC_FROM_MEMFD) or exe.startswith("/memfd:"),
        exe_ino=exe_ino,
        exe_dev=exe_dev,
        ns_pid=ns_pid,
        described=bool(exe_flags & EXE_RESOLVED),
        vpid=vpid,
        tty=tty,
        cwd=cstr(cwd) if exe_flags & EXE_CWD else "",
        environ=_environ(exe_flags, env, env_len, env_found, found),
        env_too_large=bool(exe_flags & EXE_ENV_UNWALKED),
        exe_foreign_mnt_ns=bool(exe_flags & EXE_FOREIGN_MNT_NS),
        is_exe_unlinked=bool(exe_flags & EXE_UNLINKED),
        exe_layer_known=bool(exe_flags & EXE_OVERLAY),
        is_exe_upper_layer=bool(exe_flags & EXE_UPPER),
        stdio=_stdio(stdio) if exe_flags & EXE_RESOLVED else (),
        fifos_kept=bool(exe_flags & EXE_FIFOS_KEPT),
        parent_inet=bool(exe_flags & EXE_PARENT_INET),
        parent_feeds=bool(exe_flags & EXE_PARENT_FEEDS),
        parent_drains=bool(exe_flags & EXE_PARENT_DRAINS),
    )


def _environ(exe_flags: int, env: bytes, env_len: int, found: bytes, count: int) -> bytes | None:
    """The environment block an exec started with, as far as the kernel read it: whole when it
    fits the record; past that, its whole variables there and those the rules name (found in
    the rest by process.c's walk, cut at ENV_FOUND_LEN bytes). None when the kernel could not
    read it, or the walk did not reach its end (user space reads /proc then)."""
    if not exe_flags & EXE_ENV:
        return None
    if env_len <= ENV_CAPTURE:
        return env[:env_len]
    if not exe_flags & EXE_ENV_WALKED:
        return None
    whole = env[:env.rfind(b"\0") + 1]  # the variable the record cut is dropped
    names = {var.partition(b"=")[0] for var in whole.split(b"\0")}
    for i in range(min(count, ENV_FOUND_SLOTS)):
        var = found[i * ENV_FOUND_LEN:(i + 1) * ENV_FOUND_LEN].partition(b"\0")[0]
        if var.partition(b"=")[0] not in names:
            whole += var + b"\0"
    return whole


def _stdio(raw: bytes) -> tuple[StdioFd, ...]:
    found = []
    for i_mode, dev, ino, sock_info in STDIO.iter_unpack(raw):
        kind = fd_kind(i_mode, sock_info) or ("" if not i_mode else "socket")
        socket = ino if i_mode & S_IFMT == S_IFSOCK else 0
        found.append(StdioFd(kind, (dev, ino) if kind == "pipe" else None, socket))
    return tuple(found)


def decode_fork(raw: Record) -> ForkEvent:
    ts, cgroup_id, _k, pid, tid, uid, gid, _p, comm, parent, child, flags, nr, _p2, *exe = (
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
        comm=comm_text(comm),
        ret=child,
        child_pid=child,
        child_tid=child,
        args={"flags": flags, "parent_tid": parent},
        exe_ino=exe[0],
        exe_dev=exe[1],
        exe_foreign_mnt_ns=bool(exe[2]),
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
        comm=comm_text(comm),
        ret=status,
    )


def sockaddr(raw: bytes) -> tuple[int, str, int]:
    """(family, address, port) of a struct sockaddr; unix paths as text, "@name" if abstract.

    A v4-mapped IPv6 address (::ffff:a.b.c.d) is the IPv4 address it carries: the kernel
    sends IPv4 packets to it, and rules about a.b.c.d must meet it."""
    if len(raw) < 2:
        return 0, "", 0
    (family,) = struct.unpack_from("<H", raw)
    if family == AF_INET and len(raw) >= 8:
        return family, str(ipaddress.IPv4Address(raw[4:8])), struct.unpack_from(">H", raw, 2)[0]
    if family == AF_INET6 and len(raw) >= 24:
        address = ipaddress.IPv6Address(raw[8:24])
        text = str(address.ipv4_mapped or address)
        return family, text, struct.unpack_from(">H", raw, 2)[0]
    if family == AF_UNIX:
        path = raw[2:]
        if path[:1] == b"\0":
            return family, "@" + cstr(path[1:]), 0
        return family, cstr(path), 0
    return family, "", 0


def decode_syscall(raw: Record) -> SyscallEvent | None:
    fields = SYSCALL.unpack_from(raw)
    ts, cgroup_id, _k, pid, tid, uid, gid, _p, comm, nr, sock_info, ret = fields[:12]
    a0, a1, a2, a3, a4, a5, deref, addr_len, info, fd_mode, _p2 = fields[12:23]
    exe_ino, exe_dev, exe_foreign, path1, tail, base = fields[23:]
    spec = catalog.BY_NR.get(nr)
    if spec is None:
        return None
    a = (a0, a1, a2, a3, a4, a5)
    common = {
        "type": spec.name, "ts_ns": ts, "cgroup_id": cgroup_id, "pid": pid, "tid": tid,
        "uid": uid, "gid": gid, "comm": comm_text(comm), "ret": ret,
        "compat": bool(info & SC_COMPAT), "io_uring": bool(info & SC_IO_URING),
        "exe_ino": exe_ino, "exe_dev": exe_dev,
        "exe_foreign_mnt_ns": bool(exe_foreign),
    }  # fmt: skip
    base_dir = cstr(base) if info & SC_BASE else ""
    if spec.family == "file":
        return _file_event(spec.name, a, deref, cstr(path1), cstr(tail), base_dir, common)
    if spec.family == "net":
        return _net_event(spec.name, a, sock_info, tail[:addr_len], common)
    args = _args(spec, a, path1, tail, sock_info)
    if base_dir and spec.family == "process":
        args["cwd"] = base_dir  # chdir/fchdir: the new cwd, as the kernel resolved it
    if spec.family == "fd":
        return _fd_event(spec.name, a, sock_info, fd_mode, tail[:addr_len], args, common)
    return SyscallEvent(**common, args=args)


def fd_kind(i_mode: int, sock_info: int) -> str:
    """Falco's fd.type of a descriptor: by socket family, else by the inode's type."""
    if i_mode & S_IFMT == S_IFSOCK or (not i_mode and sock_info & SOCKET_KNOWN):
        family = (sock_info >> 16) & 0x3FFF if sock_info & SOCKET_KNOWN else 0
        return SOCKET_KINDS.get(family, "socket")
    return FILE_KINDS.get(i_mode & S_IFMT, "")


def decode_open(raw: Record) -> FileEvent | None:
    """An open as the kernel saw it: the opened file's path (or, for a relative path that
    opened nothing, the directory it was relative to), and the path as written."""
    fields = OPEN.unpack_from(raw)
    ts, cgroup_id, _k, pid, tid, uid, gid, _p, comm = fields[:9]
    nr, info, ret, dirfd, flags, mode, ino, dev, i_mode, raw_path, path = fields[9:]
    spec = catalog.BY_NR.get(nr)
    if spec is None:
        return None
    written = cstr(raw_path)
    ev = FileEvent(
        type=spec.name, ts_ns=ts, cgroup_id=cgroup_id, pid=pid, tid=tid, uid=uid, gid=gid,
        comm=comm_text(comm), ret=ret, compat=bool(info & OPEN_COMPAT),
        io_uring=bool(info & OPEN_IO_URING), path=written,
        raw_path=written, dirfd=dirfd, flags=CREAT_FLAGS if spec.name == "creat" else flags,
        mode=mode, file_mode=i_mode, ino=ino, dev=dev,
    )  # fmt: skip
    if info & OPEN_RESOLVED and not info & OPEN_TRUNCATED:
        # Most opens name the file they open: the same bytes need not be decoded twice.
        end = raw_path.find(b"\0") + 1  # 0: no terminator, the path as written was cut
        same = end > 0 and path[:end] == raw_path[:end]
        ev.path, ev.resolved = written if same else cstr(path), True
    elif info & OPEN_BASE and not info & OPEN_TRUNCATED:
        ev.base = cstr(path)
    return ev


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
    elif spec.family == "fd":
        args["oldfd_is_socket"] = 1 if sock_info & SOCKET_KNOWN else 0
    return args


@functools.cache
def _arg_index(name: str) -> dict[str, int]:
    """Position of each named argument of a syscall (built once per syscall, not per record)."""
    return {arg: i for i, arg in enumerate(catalog.BY_NAME[name].args)}


def _file_event(
    name: str, a: tuple[int, ...], deref: int, path: str, second: str, base: str,
    common: dict[str, object],
) -> FileEvent:
    ev = FileEvent(**common, path=path, target=second, raw_path=path, base=base)  # type: ignore[arg-type]
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


def _fd_event(
    name: str, a: tuple[int, ...], sock_info: int, fd_mode: int, addr: bytes,
    args: dict[str, int | str], common: dict[str, object],
) -> FdEvent:
    """A dup or fcntl(F_DUPFD) onto fds 0-2: the new fd is the result."""
    _family, host, port = sockaddr(addr)
    if name == "fcntl":
        args.pop("arg", None)
        args["oldfd"] = s32(a[0])
    ret = int(common["ret"])  # type: ignore[call-overload]
    args["newfd"] = ret if name in ("dup", "fcntl") else args.get("newfd", ret)
    return FdEvent(
        **common,  # type: ignore[arg-type]
        args=args,
        fd=ret,
        kind=fd_kind(fd_mode, sock_info),
        addr=host,
        port=port,
        accepted=bool(sock_info & SOCKET_ACCEPTED),
    )


def decode_cgroup(raw: Record) -> CgroupEvent:
    ts, cgroup_id, *_header, path = CGROUP.unpack_from(raw)
    return CgroupEvent(type="cgroup_mkdir", ts_ns=ts, cgroup_id=cgroup_id, path=cstr(path))


DECODERS: dict[int, Callable[[Record], Event | None]] = {
    EVENT_CGROUP: decode_cgroup,
    EVENT_EXEC: decode_exec,
    EVENT_SYSCALL: decode_syscall,
    EVENT_FORK: decode_fork,
    EVENT_EXIT: decode_exit,
    EVENT_OPEN: decode_open,
}


def decode(raw: Record) -> Event | None:
    """Decode one record by its kind; unknown kinds are skipped (None)."""
    (kind,) = _KIND.unpack_from(raw, KIND_OFFSET)
    decoder = DECODERS.get(kind)
    return decoder(raw) if decoder is not None else None


# --- the compiled decoder ------------------------------------------------------------------

_VALUE = re.compile(r"(\d*)([a-zA-Z?])")


def value_layout(layout: struct.Struct) -> tuple[tuple[int, str, int], ...]:
    """(offset, code, size) of each value `layout.unpack` gives, in order (pad bytes give
    none): how the compiled decoder finds them, from the one description of each record."""
    assert layout.format[0] == "<", "offsets are computed without alignment"
    values: list[tuple[int, str, int]] = []
    prefix = "<"
    for count, code in _VALUE.findall(layout.format[1:]):
        if code in "sx":
            if code == "s":
                values.append((struct.calcsize(prefix), code, int(count or 1)))
            prefix += count + code
            continue
        for _ in range(int(count or 1)):
            values.append((struct.calcsize(prefix), code, struct.calcsize("<" + code)))
            prefix += code
    assert struct.calcsize(prefix) == layout.size
    return tuple(values)


def _fields(cls: type) -> tuple[tuple[str, int, object], ...]:
    """What the compiled decoder needs to build `cls` without its __init__: each field's name
    and default, in order. Only a slotted dataclass whose __init__ does nothing else will do."""
    from cauditd.probes import _fastrecords as fast  # type: ignore[attr-defined]

    if not dataclasses.is_dataclass(cls) or hasattr(cls, "__post_init__") or any(
        "__dict__" in vars(base) for base in cls.__mro__[:-1]
    ):
        raise TypeError(f"{cls.__name__} is not a slotted dataclass with a plain __init__")
    found: list[tuple[str, int, object]] = []
    for field in dataclasses.fields(cls):
        if field.default is not dataclasses.MISSING:
            found.append((field.name, fast.DEFAULT, field.default))
        elif field.default_factory is not dataclasses.MISSING:
            found.append((field.name, fast.FACTORY, field.default_factory))
        else:
            found.append((field.name, fast.REQUIRED, None))
    return tuple(found)


def compiled_decoder() -> Decoder | None:
    """probes/_fastrecords.c's decoder: open, fork and exit records as decode_open, decode_fork
    and decode_exit give them, and every other record through `decode`; it also decodes a
    whole batch (`decode_batch`, which the mmap reader uses). None, with the reason logged,
    when it was not built, or was built from another version of its source."""
    try:
        fast = importlib.import_module("cauditd.probes._fastrecords")
    except ImportError as exc:
        log.info("the compiled record decoder is not built (%s): decoding in Python", exc)
        return None
    source = Path(__file__).with_name("_fastrecords.c")
    if source.exists() and hashlib.sha256(source.read_bytes()).hexdigest() != fast.SOURCE_SHA:
        log.warning("the compiled record decoder was built from another version of %s; "
                    "decoding in Python (reinstall the package to rebuild it)", source.name)
        return None
    try:
        decoder: Decoder = fast.Decoder(
            layouts=tuple((value_layout(s), s.size) for s in (OPEN, FORK, EXIT)),
            kinds=(EVENT_OPEN, EVENT_FORK, EVENT_EXIT),
            kind_offset=KIND_OFFSET,
            open_bits=(OPEN_RESOLVED, OPEN_BASE, OPEN_TRUNCATED, OPEN_COMPAT, OPEN_IO_URING),
            names={nr: spec.name for nr, spec in catalog.BY_NR.items()},
            creat_flags=CREAT_FLAGS,
            fork_types=_FORK_TYPES,
            events=tuple((cls, _fields(cls)) for cls in (FileEvent, ForkEvent, ExitEvent)),
            fallback=decode,
            text_decode=text.decode,
        )
    except (TypeError, ValueError) as exc:  # a layout or class it was not written for
        log.warning("the compiled record decoder refused this version's records (%s); "
                    "decoding in Python", exc)
        return None
    return decoder
