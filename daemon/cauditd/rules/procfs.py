"""What some fields read from /proc when a loaded rule or output asks for them: capabilities,
login uid, namespace pids, environment, the executable's inode, whether a process holds a
network socket, and the container's own users.

Nothing here runs unless a field that needs it is in a loaded rule (extractors run only then).
Every read is bounded and never raises: the processes and containers write what is read
(environment, /etc/passwd), so it is parsed as untrusted bytes, cut at a size, and a failure is
just "no value". Results are kept a short while (MEMO_S) so several rules on one event read once.
The container's /etc/passwd and /etc/group are opened below its root without following symlinks
(a container could point them at host files otherwise).
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import stat
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

PROC = "/proc"
MEMO_S = 1.0
MEMO_MAX = 4096
STATUS_MAX = 16 << 10
ENVIRON_MAX = 64 << 10
ENV_VARS_MAX = 1024
USERDB_MAX = 256 << 10
USERDB_S = 30.0
UNSET_LOGINUID = 0xFFFFFFFF
FDS_MAX = 16384  # fds of a process looked through for sockets
NET_TABLE_MAX = 8 << 20  # bytes read of each of its network namespace's socket tables
INET_TABLES = ("tcp", "tcp6", "udp", "udp6")

T = TypeVar("T")


class _Memo:
    """A small time-bounded cache: (what, key) -> value, for at most `ttl` seconds."""

    def __init__(self, ttl: float, size: int = MEMO_MAX,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl, self._size, self._clock = ttl, size, clock
        self._items: OrderedDict[tuple[Any, ...], tuple[float, Any]] = OrderedDict()

    def get(self, key: tuple[Any, ...], load: Callable[[], T]) -> T:
        now = self._clock()
        hit = self._items.get(key)
        if hit is not None and hit[0] > now:
            value: T = hit[1]
            return value
        value = load()
        self._items[key] = (now + self._ttl, value)
        self._items.move_to_end(key)
        while len(self._items) > self._size:
            self._items.popitem(last=False)
        return value

    def drop(self, key: tuple[Any, ...]) -> None:
        self._items.pop(key, None)

    def clear(self) -> None:
        self._items.clear()


_memo = _Memo(MEMO_S)
_userdb_memo = _Memo(USERDB_S, size=256)


def forget() -> None:
    """Drop everything kept (tests that change what /proc holds)."""
    _memo.clear()
    _userdb_memo.clear()


def read_bounded(path: str, limit: int, *, dir_fd: int | None = None) -> bytes | None:
    """Up to `limit` bytes of a regular or /proc file; None when it cannot be read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW,
                     dir_fd=dir_fd)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        chunks, left = [], limit
        while left > 0:
            chunk = os.read(fd, min(left, 65536))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


# --- /proc/<pid>/status ------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Status:
    """The lines of /proc/<pid>/task/<tid>/status the fields use."""

    cap_effective: int | None = None
    cap_permitted: int | None = None
    cap_inheritable: int | None = None
    vpid: int | None = None
    vtid: int | None = None
    vpgid: int | None = None
    vsid: int | None = None


def status(pid: int, tid: int = 0) -> Status | None:
    """The thread's (else the process's) status; None once it is gone."""
    return _memo.get(("status", pid, tid), lambda: _read_status(pid, tid))


def _read_status(pid: int, tid: int) -> Status | None:
    path = f"{PROC}/{pid}/task/{tid}/status" if tid else f"{PROC}/{pid}/status"
    raw = read_bounded(path, STATUS_MAX)
    if raw is None and tid:
        raw = read_bounded(f"{PROC}/{pid}/status", STATUS_MAX)
    if raw is None:
        return None
    fields: dict[str, str] = {}
    for line in raw.decode("ascii", "replace").splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return Status(
        cap_effective=_hex(fields.get("CapEff")),
        cap_permitted=_hex(fields.get("CapPrm")),
        cap_inheritable=_hex(fields.get("CapInh")),
        vpid=_last(fields.get("NStgid")),  # the process's; NSpid is the thread's own
        vtid=_last(fields.get("NSpid")),
        vpgid=_last(fields.get("NSpgid")),
        vsid=_last(fields.get("NSsid")),
    )


def _hex(text: str | None) -> int | None:
    try:
        return int(text, 16) if text else None
    except ValueError:
        return None


def _last(text: str | None) -> int | None:
    """The innermost namespace's id: the last number of an NSpid-style line."""
    try:
        return int(text.split()[-1]) if text else None
    except (ValueError, IndexError):
        return None


CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)


def capability_names(mask: int) -> str:
    """A capability set as Falco prints it: names separated by spaces."""
    return " ".join(name for bit, name in enumerate(CAPABILITIES) if mask >> bit & 1)


# --- other per-process files ---------------------------------------------------------------


def loginuid(pid: int) -> int | None:
    """The audit login uid; -1 when unset (as Falco shows it)."""
    def load() -> int | None:
        raw = read_bounded(f"{PROC}/{pid}/loginuid", 32)
        try:
            value = int(raw or b"")
        except ValueError:
            return None
        return -1 if value == UNSET_LOGINUID else value

    return _memo.get(("loginuid", pid), load)


def environ(pid: int) -> tuple[str, ...] | None:
    """The process's environment as NAME=value strings (cut at ENVIRON_MAX bytes, ENV_VARS_MAX
    variables); None when it cannot be read."""
    def load() -> tuple[str, ...] | None:
        raw = read_bounded(f"{PROC}/{pid}/environ", ENVIRON_MAX)
        if raw is None:
            return None
        if len(raw) >= ENVIRON_MAX:  # cut: the last variable is not whole
            raw = raw[: raw.rfind(b"\0") + 1]
        return parse_environ(raw)

    return _memo.get(("environ", pid), load)


def parse_environ(raw: bytes) -> tuple[str, ...]:
    """NAME=value strings of an environment block (NUL-separated, at most ENV_VARS_MAX)."""
    items = raw.decode("utf-8", "surrogateescape").split("\0", ENV_VARS_MAX)[:ENV_VARS_MAX]
    return tuple(i for i in items if "=" in i)


def env_value(items: tuple[str, ...], name: str) -> str | None:
    """The value of variable `name` among NAME=value strings."""
    for item in items:
        key, _, value = item.partition("=")
        if key == name:
            return value
    return None


@dataclass(frozen=True, slots=True)
class ExeInode:
    """The executable file of a running process: inode and times (ns since the epoch)."""

    ino: int
    ctime_ns: int
    mtime_ns: int


def exe_inode(pid: int) -> ExeInode | None:
    def load() -> ExeInode | None:
        try:
            info = os.stat(f"{PROC}/{pid}/exe")
        except OSError:
            return None
        return ExeInode(info.st_ino, info.st_ctime_ns, info.st_mtime_ns)

    return _memo.get(("exe", pid), load)


def start_time_ns(pid: int) -> int | None:
    """When the process started, ns since the epoch (from its start tick since boot)."""
    def load() -> int | None:
        raw = read_bounded(f"{PROC}/{pid}/stat", 4096)
        if raw is None:
            return None
        try:
            ticks = int(raw[raw.rfind(b")") + 2:].split()[19])
        except (ValueError, IndexError):
            return None
        since_boot = ticks * 1_000_000_000 // os.sysconf("SC_CLK_TCK")
        boot = time.time_ns() - time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        return boot + since_boot

    return _memo.get(("start", pid), load)


# --- network sockets -------------------------------------------------------------------------

def holds_inet_socket(pid: int) -> bool | None:
    """Whether the process holds an IPv4 or IPv6 socket (TCP or UDP: listening, connected or
    bound): the socket inodes among its fds (/proc/<pid>/fd) against those of its network
    namespace's tables (/proc/<pid>/net/tcp, tcp6, udp, udp6). True when it cannot tell for
    the size (over FDS_MAX fds, a table over NET_TABLE_MAX bytes): the safe side for a rule
    asking it of a shell's parent. None once the process is gone."""
    def load() -> bool | None:
        listed = _socket_inodes(pid)
        if listed is None:
            return None
        sockets, complete = listed
        if not complete:
            return True
        if not sockets:
            return False
        for table in INET_TABLES:
            raw = read_bounded(f"{PROC}/{pid}/net/{table}", NET_TABLE_MAX)
            if raw is not None and (len(raw) >= NET_TABLE_MAX or table_holds(raw, sockets)):
                return True
        return False

    return _memo.get(("inet", pid), load)


def _socket_inodes(pid: int) -> tuple[set[int], bool] | None:
    """Inodes of the sockets among the process's fds, and whether those are all its fds (not
    past FDS_MAX); None when they cannot be listed."""
    found: set[int] = set()
    try:
        with os.scandir(f"{PROC}/{pid}/fd") as fds:
            for count, entry in enumerate(fds):
                if count >= FDS_MAX:
                    return found, False
                with contextlib.suppress(OSError):
                    inode = os.readlink(entry.path).removeprefix("socket:[").removesuffix("]")
                    if inode.isdigit():
                        found.add(int(inode))
    except OSError:
        return None
    return found, True


def table_holds(raw: bytes, inodes: set[int]) -> bool:
    """Whether a /proc/net/{tcp,udp}[6] table lists a socket of one of these inodes (the
    tenth column)."""
    for line in raw.splitlines()[1:]:
        columns = line.split()
        if len(columns) > 9 and columns[9].isdigit() and int(columns[9]) in inodes:
            return True
    return False


# --- users and groups ----------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class User:
    name: str
    home: str
    shell: str


@dataclass(frozen=True, slots=True)
class UserDb:
    """uid -> User and gid -> group name, from a passwd and a group file."""

    users: dict[int, User]
    groups: dict[int, str]


HOST_DB_KEY = "host"
EMPTY_DB = UserDb({}, {})


def userdb(container_id: str, pids: Iterable[int]) -> UserDb:
    """The users and groups a container knows (the host's for "host"), read below the root of
    the first of `pids` still alive (the event's process, its ancestors, the container's first
    process). Nothing is kept when none is: a later event may find one."""
    if container_id == HOST_DB_KEY:
        return _userdb_memo.get(("host",), _host_db) or EMPTY_DB
    found = _userdb_memo.get(("container", container_id), lambda: _container_db(pids))
    if found is None:
        _userdb_memo.drop(("container", container_id))
        return EMPTY_DB
    return found


def _host_db() -> UserDb | None:
    users = {p.pw_uid: User(p.pw_name, p.pw_dir, p.pw_shell) for p in pwd.getpwall()}
    return UserDb(users, {g.gr_gid: g.gr_name for g in grp.getgrall()})


def _container_db(pids: Iterable[int]) -> UserDb | None:
    for pid in pids:
        found = _container_files(pid)
        if found is not None:
            passwd, group = found
            return UserDb(parse_passwd(passwd or b""), parse_group(group or b""))
    return None


def _container_files(pid: int) -> tuple[bytes | None, bytes | None] | None:
    """The container's /etc/passwd and /etc/group, opened below its root: /proc/<pid>/root, then
    etc and each file with O_NOFOLLOW, so a symlink cannot lead the read out of the container.
    None when the process is gone (an image without /etc gives no users)."""
    try:
        root = os.open(f"{PROC}/{pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        etc = os.open("etc", os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                      dir_fd=root)
    except OSError:
        os.close(root)
        return None, None
    try:
        return (read_bounded("passwd", USERDB_MAX, dir_fd=etc),
                read_bounded("group", USERDB_MAX, dir_fd=etc))
    finally:
        os.close(etc)
        os.close(root)


def parse_passwd(raw: bytes) -> dict[int, User]:
    users: dict[int, User] = {}
    for line in raw.decode("utf-8", "surrogateescape").splitlines():
        parts = line.split(":")
        if len(parts) >= 7 and parts[2].isdigit() and parts[0]:
            users.setdefault(int(parts[2]), User(parts[0], parts[5], parts[6]))
    return users


def parse_group(raw: bytes) -> dict[int, str]:
    groups: dict[int, str] = {}
    for line in raw.decode("utf-8", "surrogateescape").splitlines():
        parts = line.split(":")
        if len(parts) >= 3 and parts[2].isdigit() and parts[0]:
            groups.setdefault(int(parts[2]), parts[0])
    return groups
