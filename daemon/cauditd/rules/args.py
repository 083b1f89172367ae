"""Syscall arguments as Falco names and prints them: evt.arg.*, evt.arg[N], evt.rawarg.*, evt.args.

Falco names each syscall's parameters (those of its exit event: `res` or `fd` first) and renders
flags and enums by name ("O_WRONLY|O_CREAT", "AF_PACKET", "PTRACE_ATTACH", "CLONE_NEWNS",
"BIND|REC", "S_IXOTH|...|S_ISUID"), so rules test them with `contains`. PARAMS is that list per
event type, read from the fields cauditd's events carry; a rendered value is a `Rendered` string
that also keeps its number, so `evt.arg.domain = 17` and `evt.arg.domain = AF_PACKET` both hold.
evt.rawarg gives the numbers: Linux's own values (Falco's are its drivers' encoding).
cauditd's own argument names (nstype, oldfd_is_socket, source, fstype, ...) keep working.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cauditd.events import Event, ExecEvent, FileEvent, NetSyscallEvent, SyscallEvent


class Rendered(str):
    """An argument as Falco prints it, remembering the number it came from (`raw`)."""

    __slots__ = ("raw",)
    raw: int

    def __new__(cls, text: str, raw: int) -> Rendered:
        self = super().__new__(cls, text)
        self.raw = raw
        return self


Names = tuple[tuple[int, str], ...]


def flag_names(value: int, table: Names) -> str:
    """Falco's rendering of a flags value: each name whose bits are all set, in table order,
    its bits then taken out; the number itself when no name applies."""
    names, left = [], value
    for bit, name in table:
        if (bit == 0 and value == 0) or (bit and left & bit == bit and left):
            names.append(name)
            left &= ~bit
    return "|".join(names) or str(value)


def enum_names(value: int, table: Names) -> str:
    """Falco's rendering of an enum: every name with exactly this value."""
    return "|".join(name for bit, name in table if bit == value) or str(value)


def mode_names(mode: int) -> str:
    """A chmod mode as Falco prints it: S_IXOTH|S_IROTH|...|S_ISUID, lowest bit first."""
    return "|".join(name for bit, name in MODE_BITS if mode & bit) or oct_text(mode)


def oct_text(value: int) -> str:
    return f"0{value:o}" if value else "0"


def hex_text(value: int) -> str:
    return f"0x{value:x}" if value else "0"


def errno_text(value: int) -> str:
    return str(value) if value >= 0 else errno.errorcode.get(-value, str(value))


# --- Linux's values, in the order Falco's tables list their names ------------------------

O_ACCMODE = 0o3
OPEN_FLAGS: Names = (
    (0o100000, "O_LARGEFILE"), (0o200000, "O_DIRECTORY"), (0o40000, "O_DIRECT"),
    (0o1000, "O_TRUNC"), (0o4010000, "O_SYNC"), (0o4000, "O_NONBLOCK"), (0o200, "O_EXCL"),
    (0o10000, "O_DSYNC"), (0o2000, "O_APPEND"), (0o100, "O_CREAT"),
)
OPEN_FLAGS_TAIL: Names = ((0o2000000, "O_CLOEXEC"), (0o10000000, "O_PATH"))
O_TMPFILE = 0o20200000
SOCKET_FAMILIES: Names = (
    (39, "AF_NFC"), (38, "AF_ALG"), (37, "AF_CAIF"), (36, "AF_IEEE802154"), (35, "AF_PHONET"),
    (34, "AF_ISDN"), (33, "AF_RXRPC"), (32, "AF_IUCV"), (31, "AF_BLUETOOTH"), (30, "AF_TIPC"),
    (29, "AF_CAN"), (26, "AF_LLC"), (25, "AF_WANPIPE"), (24, "AF_PPPOX"), (23, "AF_IRDA"),
    (22, "AF_SNA"), (21, "AF_RDS"), (20, "AF_ATMSVC"), (19, "AF_ECONET"), (18, "AF_ASH"),
    (17, "AF_PACKET"), (16, "AF_ROUTE"), (16, "AF_NETLINK"), (15, "AF_KEY"),
    (14, "AF_SECURITY"), (13, "AF_NETBEUI"), (12, "AF_DECnet"), (11, "AF_ROSE"),
    (10, "AF_INET6"), (9, "AF_X25"), (8, "AF_ATMPVC"), (7, "AF_BRIDGE"), (6, "AF_NETROM"),
    (5, "AF_APPLETALK"), (4, "AF_IPX"), (3, "AF_AX25"), (2, "AF_INET"), (1, "AF_LOCAL"),
    (1, "AF_UNIX"), (0, "AF_UNSPEC"), (40, "AF_VSOCK"), (44, "AF_XDP"),
)
SOCKET_TYPES: Names = (
    (1, "SOCK_STREAM"), (2, "SOCK_DGRAM"), (3, "SOCK_RAW"), (4, "SOCK_RDM"),
    (5, "SOCK_SEQPACKET"), (6, "SOCK_DCCP"), (10, "SOCK_PACKET"),
)
SOCKET_TYPE_FLAGS: Names = ((0o2000000, "SOCK_CLOEXEC"), (0o4000, "SOCK_NONBLOCK"))
CLONE_FLAGS: Names = (
    (0x400, "CLONE_FILES"), (0x200, "CLONE_FS"), (0x80000000, "CLONE_IO"),
    (0x8000000, "CLONE_NEWIPC"), (0x40000000, "CLONE_NEWNET"), (0x20000, "CLONE_NEWNS"),
    (0x20000000, "CLONE_NEWPID"), (0x4000000, "CLONE_NEWUTS"), (0x8000, "CLONE_PARENT"),
    (0x100000, "CLONE_PARENT_SETTID"), (0x2000, "CLONE_PTRACE"), (0x800, "CLONE_SIGHAND"),
    (0x40000, "CLONE_SYSVSEM"), (0x10000, "CLONE_THREAD"), (0x800000, "CLONE_UNTRACED"),
    (0x100, "CLONE_VM"), (0x10000000, "CLONE_NEWUSER"), (0x200000, "CLONE_CHILD_CLEARTID"),
    (0x1000000, "CLONE_CHILD_SETTID"), (0x80000, "CLONE_SETTLS"), (0x4000, "CLONE_VFORK"),
    (0x2000000, "CLONE_NEWCGROUP"),
)
MOUNT_FLAGS: Names = tuple((1 << i, name) for i, name in enumerate((
    "RDONLY", "NOSUID", "NODEV", "NOEXEC", "SYNCHRONOUS", "REMOUNT", "MANDLOCK", "DIRSYNC",
    "NOSYMFOLLOW", "", "NOATIME", "NODIRATIME", "BIND", "MOVE", "REC", "SILENT", "POSIXACL",
    "UNBINDABLE", "PRIVATE", "SLAVE", "SHARED", "RELATIME", "KERNMOUNT", "I_VERSION",
    "STRICTATIME", "LAZYTIME", "", "", "NOSEC", "BORN", "ACTIVE", "NOUSER",
)) if name)
UMOUNT_FLAGS: Names = ((1, "FORCE"), (2, "DETACH"), (4, "EXPIRE"), (8, "NOFOLLOW"))
PTRACE_REQUESTS: Names = (
    (0, "PTRACE_TRACEME"), (1, "PTRACE_PEEKTEXT"), (2, "PTRACE_PEEKDATA"),
    (3, "PTRACE_PEEKUSR"), (4, "PTRACE_POKETEXT"), (5, "PTRACE_POKEDATA"),
    (6, "PTRACE_POKEUSR"), (7, "PTRACE_CONT"), (8, "PTRACE_KILL"), (9, "PTRACE_SINGLESTEP"),
    (12, "PTRACE_GETREGS"), (13, "PTRACE_SETREGS"), (14, "PTRACE_GETFPREGS"),
    (15, "PTRACE_SETFPREGS"), (16, "PTRACE_ATTACH"), (17, "PTRACE_DETACH"),
    (18, "PTRACE_GETFPXREGS"), (19, "PTRACE_SETFPXREGS"), (21, "PTRACE_OLDSETOPTIONS"),
    (24, "PTRACE_SYSCALL"), (25, "PTRACE_GET_THREAD_AREA"), (26, "PTRACE_SET_THREAD_AREA"),
    (30, "PTRACE_ARCH_PRCTL"), (31, "PTRACE_SYSEMU"), (32, "PTRACE_SYSEMU_SINGLESTEP"),
    (33, "PTRACE_SINGLEBLOCK"), (0x4200, "PTRACE_SETOPTIONS"), (0x4201, "PTRACE_GETEVENTMSG"),
    (0x4202, "PTRACE_GETSIGINFO"), (0x4203, "PTRACE_SETSIGINFO"), (0x4204, "PTRACE_GETREGSET"),
    (0x4205, "PTRACE_SETREGSET"), (0x4206, "PTRACE_SEIZE"), (0x4207, "PTRACE_INTERRUPT"),
    (0x4208, "PTRACE_LISTEN"), (0x4209, "PTRACE_PEEKSIGINFO"), (0x420A, "PTRACE_GETSIGMASK"),
    (0x420B, "PTRACE_SETSIGMASK"),
)
BPF_COMMANDS: Names = (*((i, f"BPF_{name}") for i, name in enumerate((
    "MAP_CREATE", "MAP_LOOKUP_ELEM", "MAP_UPDATE_ELEM", "MAP_DELETE_ELEM", "MAP_GET_NEXT_KEY",
    "PROG_LOAD", "OBJ_PIN", "OBJ_GET", "PROG_ATTACH", "PROG_DETACH", "PROG_TEST_RUN",
    "PROG_GET_NEXT_ID", "MAP_GET_NEXT_ID", "PROG_GET_FD_BY_ID", "MAP_GET_FD_BY_ID",
    "OBJ_GET_INFO_BY_FD", "PROG_QUERY", "RAW_TRACEPOINT_OPEN", "BTF_LOAD", "BTF_GET_FD_BY_ID",
    "TASK_FD_QUERY", "MAP_LOOKUP_AND_DELETE_ELEM", "MAP_FREEZE", "BTF_GET_NEXT_ID",
    "MAP_LOOKUP_BATCH", "MAP_LOOKUP_AND_DELETE_BATCH", "MAP_UPDATE_BATCH", "MAP_DELETE_BATCH",
    "LINK_CREATE", "LINK_UPDATE", "LINK_GET_FD_BY_ID", "LINK_GET_NEXT_ID", "ENABLE_STATS",
    "ITER_CREATE", "LINK_DETACH", "PROG_BIND_MAP", "TOKEN_CREATE",
))), (10, "BPF_PROG_RUN"))
MEMFD_FLAGS: Names = ((1, "MFD_CLOEXEC"), (2, "MFD_ALLOW_SEALING"), (4, "MFD_HUGETLB"))
UNLINKAT_FLAGS: Names = ((0x200, "AT_REMOVEDIR"),)
LINKAT_FLAGS: Names = ((0x400, "AT_SYMLINK_FOLLOW"), (0x1000, "AT_EMPTY_PATH"))
FCHOWNAT_FLAGS: Names = ((0x100, "AT_SYMLINK_NOFOLLOW"), (0x1000, "AT_EMPTY_PATH"))
RENAMEAT2_FLAGS: Names = ((1, "RENAME_NOREPLACE"), (2, "RENAME_EXCHANGE"), (4, "RENAME_WHITEOUT"))
FINIT_MODULE_FLAGS: Names = ((1, "MODULE_INIT_IGNORE_MODVERSIONS"),
                             (2, "MODULE_INIT_IGNORE_VERMAGIC"),
                             (4, "MODULE_INIT_COMPRESSED_FILE"))
FD_FLAGS: Names = ((0o4000, "O_NONBLOCK"), (0o2000000, "O_CLOEXEC"))
MODE_BITS: Names = (
    (0o1, "S_IXOTH"), (0o2, "S_IWOTH"), (0o4, "S_IROTH"), (0o10, "S_IXGRP"), (0o20, "S_IWGRP"),
    (0o40, "S_IRGRP"), (0o100, "S_IXUSR"), (0o200, "S_IWUSR"), (0o400, "S_IRUSR"),
    (0o1000, "S_ISVTX"), (0o2000, "S_ISGID"), (0o4000, "S_ISUID"),
)


def open_flags(flags: int) -> str:
    """Open flags as Falco prints them: "O_TRUNC|O_CREAT|O_WRONLY", "O_RDONLY|O_CLOEXEC"."""
    names, left = [], flags
    if flags & O_TMPFILE == O_TMPFILE:
        left &= ~O_TMPFILE
    for bit, name in OPEN_FLAGS:
        if left & bit == bit:
            names.append(name)
            left &= ~bit
    names.append(("O_RDONLY", "O_WRONLY", "O_RDWR", "O_RDWR")[flags & O_ACCMODE])
    names += [name for bit, name in OPEN_FLAGS_TAIL if left & bit]
    if flags & O_TMPFILE == O_TMPFILE:
        names.append("O_TMPFILE")
    return "|".join(names)


def socket_type(value: int) -> str:
    kind = enum_names(value & 0xF, SOCKET_TYPES)
    extra = [name for bit, name in SOCKET_TYPE_FLAGS if value & bit]
    return "|".join((kind, *extra))


def execve_flags(ev: Event) -> str:
    if not isinstance(ev, ExecEvent):
        return "0"
    names = [name for name, on in (("EXE_UPPER_LAYER", ev.is_exe_upper_layer),
                                   ("EXE_FROM_MEMFD", ev.is_exe_from_memfd)) if on]
    return "|".join(names) or "0"


# --- where each parameter's value is in cauditd's events ---------------------------------

Source = Callable[[Event], Any]


def _attr(name: str) -> Source:
    return lambda ev: getattr(ev, name, None)


def _arg(name: str) -> Source:
    return lambda ev: ev.args.get(name) if isinstance(ev, SyscallEvent) else None


def _fd_result(ev: Event) -> Any:
    return ev.ret if isinstance(ev, SyscallEvent) else None


def _endpoint(ev: Event) -> Any:
    if not isinstance(ev, NetSyscallEvent):
        return None
    host, port = (ev.peer_addr, ev.peer_port) if ev.type in ("accept", "accept4") \
        else (ev.addr, ev.port)
    if not host:
        return None
    if ev.family == 1:
        return host
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


RES, PATH, TARGET = _fd_result, _attr("path"), _attr("target")
Renderer = Callable[[int], str]


@dataclass(frozen=True, slots=True)
class Param:
    """One of Falco's parameters of an event: its name, where cauditd's event holds its value,
    and how Falco prints it (None: as it is)."""

    name: str
    source: Source
    render: Renderer | None = None

    def value(self, ev: Event) -> Any:
        raw = self.source(ev)
        if raw is None or self.render is None or not isinstance(raw, int):
            return raw
        return Rendered(self.render(raw), raw)


def _flags(table: Names) -> Renderer:
    return lambda value: flag_names(value, table)


def _enum(table: Names) -> Renderer:
    return lambda value: enum_names(value, table)


def _p(name: str, source: Source | str, render: Renderer | None = None) -> Param:
    return Param(name, _arg(source) if isinstance(source, str) else source, render)


_RESULT = _p("res", RES, errno_text)
_OPEN_FD = _p("fd", RES, errno_text)
_FLAGS = _p("flags", _attr("flags"), open_flags)
_DIRFD = _p("dirfd", _attr("dirfd"))
_MODE = _p("mode", _attr("mode"), oct_text)
_CHMOD = _p("mode", _attr("mode"), mode_names)
_UID, _GID = _p("uid", _attr("owner_uid")), _p("gid", _attr("owner_gid"))
_NET_FD, _ADDR = _p("fd", _attr("fd")), _p("addr", _endpoint)
_TUPLE = _p("tuple", _endpoint)
_PROCESS = (_p("res", RES), _p("exe", lambda ev: (getattr(ev, "argv", ()) or (None,))[0]),
            _p("args", lambda ev: " ".join(getattr(ev, "argv", ())[1:]) or None),
            _p("tid", _attr("tid")), _p("pid", _attr("pid")), _p("cwd", _attr("cwd")),
            _p("comm", _attr("comm")))

PARAMS: dict[str, tuple[Param, ...]] = {
    "open": (_OPEN_FD, _p("name", PATH), _FLAGS, _MODE),
    "openat": (_OPEN_FD, _DIRFD, _p("name", PATH), _FLAGS, _MODE),
    "openat2": (_OPEN_FD, _DIRFD, _p("name", PATH), _FLAGS, _MODE),
    "creat": (_OPEN_FD, _p("name", PATH), _MODE),
    "unlink": (_RESULT, _p("path", PATH)),
    "unlinkat": (_RESULT, _DIRFD, _p("name", PATH),
                 _p("flags", _attr("flags"), _flags(UNLINKAT_FLAGS))),
    "rmdir": (_RESULT, _p("path", PATH)),
    "rename": (_RESULT, _p("oldpath", PATH), _p("newpath", TARGET)),
    "renameat": (_RESULT, _p("olddirfd", _attr("dirfd")), _p("oldpath", PATH),
                 _p("newdirfd", "newdirfd"), _p("newpath", TARGET)),
    "renameat2": (_RESULT, _p("olddirfd", _attr("dirfd")), _p("oldpath", PATH),
                  _p("newdirfd", "newdirfd"), _p("newpath", TARGET),
                  _p("flags", _attr("flags"), _flags(RENAMEAT2_FLAGS))),
    "mkdir": (_RESULT, _p("path", PATH), _p("mode", _attr("mode"), hex_text)),
    "mkdirat": (_RESULT, _DIRFD, _p("path", PATH), _p("mode", _attr("mode"), hex_text)),
    "symlink": (_RESULT, _p("target", PATH), _p("linkpath", TARGET)),
    "symlinkat": (_RESULT, _p("target", PATH), _p("linkdirfd", "newdirfd"),
                  _p("linkpath", TARGET)),
    "link": (_RESULT, _p("oldpath", PATH), _p("newpath", TARGET)),
    "linkat": (_RESULT, _p("olddir", _attr("dirfd")), _p("oldpath", PATH),
               _p("newdir", "newdirfd"), _p("newpath", TARGET),
               _p("flags", _attr("flags"), _flags(LINKAT_FLAGS))),
    "chmod": (_RESULT, _p("filename", PATH), _CHMOD),
    "fchmod": (_RESULT, _p("fd", _attr("dirfd")), _CHMOD),
    "fchmodat": (_RESULT, _DIRFD, _p("filename", PATH), _CHMOD),
    "fchmodat2": (_RESULT, _DIRFD, _p("filename", PATH), _CHMOD),
    "chown": (_RESULT, _p("path", PATH), _UID, _GID),
    "lchown": (_RESULT, _p("path", PATH), _UID, _GID),
    "fchown": (_RESULT, _p("fd", _attr("dirfd")), _UID, _GID),
    "fchownat": (_RESULT, _DIRFD, _p("pathname", PATH), _UID, _GID,
                 _p("flags", _attr("flags"), _flags(FCHOWNAT_FLAGS))),
    "connect": (_RESULT, _TUPLE, _NET_FD, _ADDR),
    "bind": (_RESULT, _ADDR, _NET_FD),
    "listen": (_RESULT, _NET_FD, _p("backlog", "backlog")),
    "accept": (_p("fd", RES, errno_text), _TUPLE),
    "accept4": (_p("fd", RES, errno_text), _TUPLE),
    "sendto": (_RESULT, _p("data", lambda ev: None), _NET_FD, _p("size", lambda ev: None),
               _TUPLE),
    "recvfrom": (_RESULT, _p("data", lambda ev: None), _TUPLE, _NET_FD),
    "recvmsg": (_RESULT, _p("size", lambda ev: None), _p("data", lambda ev: None), _TUPLE,
                _p("msgcontrol", lambda ev: None), _NET_FD),
    "socket": (_p("fd", RES, errno_text), _p("domain", "domain", _enum(SOCKET_FAMILIES)),
               _p("type", "type", socket_type), _p("proto", "protocol"),
               _p("flags", "type", _flags(FD_FLAGS))),
    "setuid": (_RESULT, _p("uid", "uid")),
    "setgid": (_RESULT, _p("gid", "gid")),
    "setreuid": (_RESULT, _p("ruid", "ruid"), _p("euid", "euid")),
    "setregid": (_RESULT, _p("rgid", "rgid"), _p("egid", "egid")),
    "setresuid": (_RESULT, _p("ruid", "ruid"), _p("euid", "euid"), _p("suid", "suid")),
    "setresgid": (_RESULT, _p("rgid", "rgid"), _p("egid", "egid"), _p("sgid", "sgid")),
    "capset": (_RESULT,),
    "setns": (_RESULT, _p("fd", "fd"), _p("nstype", "nstype", _flags(CLONE_FLAGS))),
    "unshare": (_RESULT, _p("flags", "flags", _flags(CLONE_FLAGS))),
    "mount": (_RESULT, _p("dev", "source"), _p("dir", "target"), _p("type", "fstype"),
              _p("flags", "flags", _flags(MOUNT_FLAGS))),
    "umount2": (_RESULT, _p("name", "target"), _p("flags", "flags", _flags(UMOUNT_FLAGS))),
    "ptrace": (_RESULT, _p("addr", "addr", hex_text), _p("data", "data", hex_text),
               _p("request", "request", _enum(PTRACE_REQUESTS)), _p("pid", "pid")),
    "init_module": (_RESULT, _p("img", lambda ev: None), _p("length", "len"),
                    _p("uargs", lambda ev: None)),
    "finit_module": (_RESULT, _p("fd", "fd"), _p("uargs", lambda ev: None),
                     _p("flags", "flags", _flags(FINIT_MODULE_FLAGS))),
    "bpf": (_p("fd", RES, errno_text), _p("cmd", "cmd", _enum(BPF_COMMANDS))),
    "memfd_create": (_p("fd", RES, errno_text), _p("name", "name"),
                     _p("flags", "flags", _flags(MEMFD_FLAGS))),
    "userfaultfd": (_RESULT, _p("flags", "flags", _flags(FD_FLAGS))),
    "dup": (_p("res", RES), _p("oldfd", "oldfd")),
    "dup2": (_p("res", RES), _p("oldfd", "oldfd"), _p("newfd", "newfd")),
    "dup3": (_p("res", RES), _p("oldfd", "oldfd"), _p("newfd", "newfd"),
             _p("flags", "flags", _flags(FD_FLAGS))),
    "chdir": (_RESULT, _p("path", "path")),
    "execve": (*_PROCESS, _p("flags", lambda ev: Rendered(execve_flags(ev), 0)),
               _p("filename", _attr("exe"))),
    "execveat": (*_PROCESS, _p("flags", lambda ev: Rendered(execve_flags(ev), 0))),
    "procexit": (_p("status", RES),),
}
for _fork in ("clone", "fork", "vfork", "clone3"):
    PARAMS[_fork] = (*_PROCESS, _p("flags", "flags", _flags(CLONE_FLAGS)))
BY_NAME: dict[str, dict[str, Param]] = {t: {p.name: p for p in ps} for t, ps in PARAMS.items()}


# --- what the fields read -----------------------------------------------------------------


def _file_aliases(ev: FileEvent) -> dict[str, Any]:
    """cauditd's names on file events (kept: rules use them whatever the syscall)."""
    second = ev.target or None
    return {
        "name": ev.path, "path": ev.path, "pathname": ev.path, "filename": ev.path,
        "oldpath": ev.path, "newpath": second, "linkpath": second,
        "target": ev.path if ev.type in ("symlink", "symlinkat") else second,
        "dirfd": ev.dirfd, "uid": ev.owner_uid, "gid": ev.owner_gid,
        "fd": ev.ret if ev.ret >= 0 else None,
    }


def _net_aliases(ev: NetSyscallEvent) -> dict[str, Any]:
    return {"fd": ev.fd, "family": ev.family, "type": ev.sock_type, "addr": ev.addr,
            "port": ev.port, "peer_addr": ev.peer_addr, "peer_port": ev.peer_port}


# How the probes saw the call, as arguments: evt.arg.compat (int 0x80), evt.arg.io_uring.
EVENT_FLAGS = frozenset(("compat", "io_uring"))


def arg_value(ev: Event, name: str, *, raw: bool = False) -> Any:
    """Argument `name` of a syscall event: rendered as Falco does, or raw."""
    if not isinstance(ev, SyscallEvent):
        return None
    param = BY_NAME.get(ev.type, {}).get(name)
    if param is not None:
        return param.source(ev) if raw else param.value(ev)
    if name in ev.args:
        return ev.args[name]
    if name in EVENT_FLAGS:
        return getattr(ev, name)
    if isinstance(ev, FileEvent):
        if name in ("flags", "mode"):
            value = getattr(ev, name)
            return value if raw else Rendered(open_flags(value) if name == "flags"
                                              else mode_names(value), value)
        return _file_aliases(ev).get(name)
    if isinstance(ev, NetSyscallEvent):
        return _net_aliases(ev).get(name)
    return None


def arg_at(ev: Event, index: int, *, raw: bool = False) -> Any:
    """Falco's evt.arg[N]: the N-th parameter of the event as Falco lists them."""
    if not isinstance(ev, SyscallEvent):
        return None
    params = PARAMS.get(ev.type, ())
    if index >= len(params):
        return None
    return params[index].source(ev) if raw else params[index].value(ev)


def all_args(ev: Event) -> str | None:
    """Falco's evt.args: "name=value ..." with flags as "number(NAMES)"."""
    if not isinstance(ev, SyscallEvent):
        return None
    return " ".join(_arg_text(p, ev) for p in PARAMS.get(ev.type, ()))


def _arg_text(param: Param, ev: Event) -> str:
    value = param.value(ev)
    if value is None:
        return f"{param.name}=<NA>"
    if isinstance(value, Rendered) and value != str(value.raw):
        return f"{param.name}={value.raw}({value})"
    return f"{param.name}={value}"
