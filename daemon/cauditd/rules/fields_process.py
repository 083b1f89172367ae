"""Falco's process, thread, user and group fields beyond the basics: ancestors' executables,
durations, namespace pids and the session, environment, capabilities, login uid, and names of
users and groups as the process's container knows them.

What the process table does not hold is read from /proc (rules.procfs) when a loaded rule or
output asks for it, bounded and never raising; a process gone by then gives <NA>, which no
condition matches.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from cauditd.events import Event, ExecEvent, ProcessInfo, SyscallEvent
from cauditd.rules import procfs
from cauditd.rules.fields import SYS, Extractor, FieldType, _field, _parent, _proc

S, INT, B, LIST = FieldType.STRING, FieldType.INT, FieldType.BOOL, FieldType.LIST
T = TypeVar("T")


def _argv0(proc: ProcessInfo) -> str | None:
    return proc.args[0] if proc.args else proc.exe or None


def _ancestor_field(name: str, get: Callable[[ProcessInfo], Any], what: str) -> None:
    """proc.a<name>[N] (N=1 the parent) and proc.a<name> (any ancestor may match)."""

    def make(arg: str) -> Extractor:
        level = int(arg)

        def extract(ev: Event) -> Any:
            proc = _proc(ev)
            ancestor = proc.ancestor(level) if proc is not None else None
            return get(ancestor) if ancestor is not None else None

        return extract

    def every(ev: Event) -> Any:
        proc = _proc(ev)
        if proc is None:
            return None
        return tuple(v for p in proc.ancestors() if (v := get(p)) is not None)

    _field(name, LIST, SYS, f"{what} of an ancestor: {name}[1] is the parent's, {name}[2] "
           "the grandparent's; without an index, every ancestor's (any one may match).",
           arg="index", make=make)(every)


_ancestor_field("proc.aexe", _argv0, "argv[0]")
_ancestor_field("proc.aexepath", lambda p: p.exe or None, "Executable path")
_ancestor_field("proc.acmdline", lambda p: p.cmdline, "Command line")


def _stdio_field(fd: int, stream: str) -> None:
    """proc.stdin.type, proc.stdout.type, proc.stderr.type."""

    def extract(ev: Event) -> Any:
        proc = _proc(ev)
        stdio = proc.stdio if proc is not None else ()
        return stdio[fd].kind or None if len(stdio) > fd else None

    _field(f"proc.{stream}.type", S, SYS, f"Type of fd {fd} ({stream}), named as fd.type names "
           "it (ipv4, ipv6, unix, pipe, file, directory...), as it was when the process last "
           "exec'd (the exec record's, inherited across forks; dups after the exec are not "
           "followed). A shell started with ipv4 here is a bind or reverse shell "
           "(`nc -l -p 4444 -e /bin/sh`).")(extract)


for _fd, _stream in enumerate(("stdin", "stdout", "stderr")):
    _stdio_field(_fd, _stream)


@_field("proc.stdio_one_socket", B, SYS, "fds 0 and 1 were one and the same socket when the "
        "process last exec'd: a network connection (nc -e), or one end of a socketpair a relay "
        "holds the other of (socat EXEC: one channel both ways; a program that gives its child "
        "a socketpair per stream, as libuv and so Node.js do, gives two).", falco=False)
def _proc_stdio_one_socket(ev: Event) -> Any:
    proc = _proc(ev)
    if proc is None or len(proc.stdio) < 2:
        return None
    return proc.stdio[0].socket != 0 and proc.stdio[0].socket == proc.stdio[1].socket


@_field("proc.pinet_socket", B, SYS, "The parent process holds an IPv4 or IPv6 socket (TCP or "
        "UDP: listening, connected or bound): true when the kernel saw one among the parent's "
        "first 64 fds at the exec of a process with such a socket or a pipe on its stdio "
        "(known after the parent is gone), else read from /proc when a rule asks (its fds "
        "against its network namespace's socket tables): a shell on one unix socket both ways "
        "(proc.stdio_one_socket) from such a parent is a relay's (`socat TCP-LISTEN:4444 "
        "EXEC:/bin/sh` hands the shell one end of a socketpair). True when it cannot tell for "
        "the size (over 16,384 fds); <NA> once the parent is gone.", falco=False)
def _proc_pinet_socket(ev: Event) -> Any:
    proc = _proc(ev)
    if proc is None or not proc.ppid:
        return None
    return True if proc.parent_inet else procfs.holds_inet_socket(proc.ppid)


@_field("proc.exeline", S, SYS, "proc.exe and proc.args: the command line with argv[0] as "
        "given.")
def _proc_exeline(ev: Event) -> Any:
    proc = _proc(ev)
    return " ".join(proc.args) or None if proc is not None else None


@_field("proc.cmdnargs", INT, SYS, "Number of command-line arguments (after argv[0]).")
def _proc_cmdnargs(ev: Event) -> Any:
    proc = _proc(ev)
    return max(len(proc.args) - 1, 0) if proc is not None else None


@_field("proc.cmdlenargs", INT, SYS, "Total length of the command-line arguments (proc.args).")
def _proc_cmdlenargs(ev: Event) -> Any:
    proc = _proc(ev)
    return len(" ".join(proc.args[1:])) if proc is not None else None


# --- time -------------------------------------------------------------------------------


def _started_wall_ns(ev: Event, proc: ProcessInfo | None) -> int | None:
    if proc is None or not proc.start_ns:
        return None
    return ev.wall_ns - (ev.ts_ns - proc.start_ns)


@_field("proc.duration", INT, SYS, "Nanoseconds since the process started.", volatile=True)
def _proc_duration(ev: Event) -> Any:
    proc = _proc(ev)
    return ev.ts_ns - proc.start_ns if proc is not None and proc.start_ns else None


@_field("proc.ppid.duration", INT, SYS, "Nanoseconds since the parent process started.",
        volatile=True)
def _proc_ppid_duration(ev: Event) -> Any:
    parent = _parent(ev)
    return ev.ts_ns - parent.start_ns if parent is not None and parent.start_ns else None


@_field("proc.pid.ts", INT, SYS, "When the process started, nanoseconds since the epoch.",
        volatile=True)
def _proc_pid_ts(ev: Event) -> Any:
    return _started_wall_ns(ev, _proc(ev))


@_field("proc.ppid.ts", INT, SYS, "When the parent process started, nanoseconds since the "
        "epoch.", volatile=True)
def _proc_ppid_ts(ev: Event) -> Any:
    return _started_wall_ns(ev, _parent(ev))


# --- namespaces and the session (from /proc/<pid>/status) ------------------------------


INIT_IDS = procfs.Status(vpid=1, vtid=1, vpgid=1, vsid=1)


def _status(ev: Event) -> procfs.Status | None:
    """The event's thread's /proc status; for a container's first process gone by then, its
    ids in its namespace all 1 (the runtime makes it session and group leader)."""
    if not isinstance(ev, SyscallEvent):
        return None
    status = procfs.status(ev.pid, ev.tid if ev.tid != ev.pid else 0)
    if status is None and not ev.container.is_host and ev.pid == ev.container.pid:
        return INIT_IDS
    return status


def _from_living(ev: SyscallEvent, read: Callable[[int], T | None], *,
                 same_user: bool) -> T | None:
    """`read` of the event's process; once it is gone, of the nearest living ancestor in the
    same container (running as the same user, if `same_user`), else of the container's first
    process. For what passes through fork (and exec): capabilities of root, the login uid."""
    found = read(ev.pid)
    if found is not None:
        return found
    proc = _proc(ev)
    for ancestor in proc.ancestors() if proc is not None else ():
        if ancestor.container_id == ev.container.id and (not same_user
                                                         or ancestor.uid == ev.uid):
            found = read(ancestor.pid)
            if found is not None:
                return found
    if ev.container.pid and not same_user:
        return read(ev.container.pid)
    return None


def _caps_status(ev: Event) -> procfs.Status | None:
    """The event's thread's status (capabilities), or a living relative's (see _from_living)."""
    if not isinstance(ev, SyscallEvent):
        return None
    status = procfs.status(ev.pid, ev.tid if ev.tid != ev.pid else 0)
    return status if status is not None else _from_living(ev, procfs.status, same_user=True)


@_field("proc.vpid", INT, SYS, "The process id as its own pid namespace sees it (1 for a "
        "container's first process, known even once it is gone).", volatile=True)
def _proc_vpid(ev: Event) -> Any:
    if isinstance(ev, ExecEvent) and ev.described:
        return ev.vpid  # the kernel's, at the exec
    if not isinstance(ev, SyscallEvent):
        return None
    status = _status(ev)
    if status is not None and status.vpid is not None:
        return status.vpid
    return ev.pid if ev.container.is_host else None


def _status_id(pick: Callable[[procfs.Status], int | None]) -> Extractor:
    def extract(ev: Event) -> Any:
        status = _status(ev)
        return pick(status) if status is not None else None

    return extract


_field("proc.vpgid", INT, SYS, "The process group id in the process's pid namespace.",
       volatile=True)(_status_id(lambda s: s.vpgid))
_field("proc.sid", INT, SYS, "The session id in the process's pid namespace.",
       volatile=True)(_status_id(lambda s: s.vsid))


@_field("proc.is_vpgid_leader", B, SYS, "The process leads its process group (proc.vpgid = "
        "proc.vpid).")
def _proc_is_vpgid_leader(ev: Event) -> Any:
    status = _status(ev)
    if status is None or status.vpid is None or status.vpgid is None:
        return None
    return status.vpid == status.vpgid


@_field("proc.is_sid_leader", B, SYS, "The process leads its session (proc.sid = proc.vpid).")
def _proc_is_sid_leader(ev: Event) -> Any:
    status = _status(ev)
    if status is None or status.vpid is None or status.vsid is None:
        return None
    return status.vpid == status.vsid


@_field("proc.sname", S, SYS, "Name of the session leader: the process whose pid is proc.sid, "
        "else the eldest ancestor in the same session.")
def _proc_sname(ev: Event) -> Any:
    proc, status = _proc(ev), _status(ev)
    if proc is None or status is None or status.vsid is None:
        return None
    if status.vpid == status.vsid:
        return proc.name
    leader = proc
    for ancestor in proc.ancestors():
        found = procfs.status(ancestor.pid)
        if found is None or found.vsid != status.vsid:
            break
        leader = ancestor
        if found.vpid == status.vsid:
            break
    return leader.name


@_field("thread.tid", INT, SYS, "The thread id (host pid namespace).", volatile=True)
def _thread_tid(ev: Event) -> Any:
    return ev.tid if isinstance(ev, SyscallEvent) else None


@_field("thread.ismain", B, SYS, "The event comes from the process's main thread.")
def _thread_ismain(ev: Event) -> Any:
    return ev.tid == ev.pid if isinstance(ev, SyscallEvent) else None


def _caps(pick: Callable[[procfs.Status], int | None]) -> Extractor:
    def extract(ev: Event) -> Any:
        status = _caps_status(ev)
        mask = pick(status) if status is not None else None
        return procfs.capability_names(mask) if mask is not None else None

    return extract


CAP_SETS: dict[str, Callable[[procfs.Status], int | None]] = {
    "effective": lambda s: s.cap_effective,
    "permitted": lambda s: s.cap_permitted,
    "inheritable": lambda s: s.cap_inheritable,
}
for _set, _pick in CAP_SETS.items():
    _field(f"thread.cap_{_set}", S, SYS, f"The thread's {_set} capabilities as Falco prints "
           'them: "CAP_CHOWN CAP_DAC_OVERRIDE ..." (test with contains). Read from /proc when '
           "the rule runs; a thread gone by then is given its nearest living ancestor's of the "
           "same user in the same container.")(_caps(_pick))


# --- environment and executable -----------------------------------------------------------


def _environ(ev: Event) -> tuple[str, ...] | None:
    """The process's environment: of an exec, the one it started with as the kernel read it
    (whole up to 2 KiB; past that, those variables and the ones the rules name); else, or when
    the kernel could not, /proc's (the process may have rewritten it)."""
    if isinstance(ev, ExecEvent) and ev.environ is not None:
        return procfs.parse_environ(ev.environ)
    return procfs.environ(ev.pid) if isinstance(ev, SyscallEvent) else None


def _make_env(arg: str) -> Extractor:
    def extract(ev: Event) -> Any:
        found = _environ(ev)
        return procfs.env_value(found, arg) if found is not None else None

    return extract


@_field("proc.env", S, SYS, 'The environment: "NAME=value NAME2=value2" (at most 64 KiB), or '
        "one variable's value with proc.env[NAME]. Of an exec, the environment it was started "
        "with: past its first 2 KiB, only the variables rules name (proc.env[NAME], "
        'proc.env contains "NAME=..."), found by the kernel anywhere in it.', arg="key",
        make=_make_env)
def _proc_env(ev: Event) -> Any:
    found = _environ(ev)
    return " ".join(found) if found is not None else None


@_field("proc.env_too_large", B, SYS, "Of an exec: its environment is over 2 KiB and the "
        "kernel could not look through all of it for the variables the rules name (over "
        "~15,000 variables, or more of those variables than it keeps), so proc.env comes from "
        "/proc, which the process can rewrite or be gone from: an environment padded to hide "
        "one.", falco=False)
def _proc_env_too_large(ev: Event) -> Any:
    return ev.env_too_large if isinstance(ev, ExecEvent) else None


def _exe_inode(ev: Event) -> procfs.ExeInode | None:
    return procfs.exe_inode(ev.pid) if isinstance(ev, SyscallEvent) else None


@_field("proc.exe_ino", INT, SYS, "Inode number of the executable file.")
def _proc_exe_ino(ev: Event) -> Any:
    found = _exe_inode(ev)
    return found.ino if found is not None else None


@_field("proc.exe_ino.ctime", INT, SYS, "Last status change of the executable file, ns since "
        "the epoch.", volatile=True)
def _proc_exe_ctime(ev: Event) -> Any:
    found = _exe_inode(ev)
    return found.ctime_ns if found is not None else None


@_field("proc.exe_ino.mtime", INT, SYS, "Last modification of the executable file, ns since "
        "the epoch.", volatile=True)
def _proc_exe_mtime(ev: Event) -> Any:
    found = _exe_inode(ev)
    return found.mtime_ns if found is not None else None


@_field("proc.exe_ino.ctime_duration_proc_start", INT, SYS, "Nanoseconds from the executable "
        "file's last status change to the process's start (small: written just before run).",
        volatile=True)
def _proc_exe_ctime_to_start(ev: Event) -> Any:
    found, started = _exe_inode(ev), _started_wall_ns(ev, _proc(ev))
    return started - found.ctime_ns if found is not None and started is not None else None


# --- users and groups as the container knows them ----------------------------------------


def _userdb(ev: SyscallEvent) -> procfs.UserDb:
    """The container's users, read through the event's process, else a living ancestor in the
    same container, else the container's first process."""
    proc = _proc(ev)
    ancestors = [p.pid for p in proc.ancestors()
                 if p.container_id == ev.container.id] if proc is not None else []
    pids = [ev.pid, *ancestors, *([ev.container.pid] if ev.container.pid else [])]
    return procfs.userdb(ev.container.id, dict.fromkeys(pids))


def _user(ev: Event, uid: int | None) -> procfs.User | None:
    if not isinstance(ev, SyscallEvent) or uid is None or uid < 0:
        return None
    return _userdb(ev).users.get(uid)


@_field("user.name", S, SYS, 'User name from the /etc/passwd of the process\'s container (the '
        'host\'s on the host); "root" for uid 0 when it names none. Read once per container '
        "and kept 30 s.")
def _user_name(ev: Event) -> Any:
    if not isinstance(ev, SyscallEvent):
        return None
    user = _user(ev, ev.uid)  # root's events load the table too, while the container lives
    if user is None:
        return "root" if ev.uid == 0 else None
    return user.name


@_field("user.homedir", S, SYS, "Home directory of the user (as user.name).")
def _user_homedir(ev: Event) -> Any:
    user = _user(ev, ev.uid if isinstance(ev, SyscallEvent) else None)
    return user.home if user is not None else None


@_field("user.shell", S, SYS, "Login shell of the user (as user.name).")
def _user_shell(ev: Event) -> Any:
    user = _user(ev, ev.uid if isinstance(ev, SyscallEvent) else None)
    return user.shell if user is not None else None


@_field("user.loginuid", INT, SYS, "The audit login uid (who logged in, kept across su and "
        "sudo); -1 when unset, as for most container processes. Read from /proc when the rule "
        "runs (a process gone by then is given its nearest living relative's: it is "
        "inherited).")
def _user_loginuid(ev: Event) -> Any:
    if not isinstance(ev, SyscallEvent):
        return None
    return _from_living(ev, procfs.loginuid, same_user=False)


@_field("user.loginname", S, SYS, "User name of user.loginuid.")
def _user_loginname(ev: Event) -> Any:
    uid = _user_loginuid(ev)
    if uid == 0:
        return "root"
    user = _user(ev, uid)
    return user.name if user is not None else None


@_field("group.name", S, SYS, "Group name from the /etc/group of the process's container (the "
        'host\'s on the host); "root" for gid 0.')
def _group_name(ev: Event) -> Any:
    if not isinstance(ev, SyscallEvent):
        return None
    if ev.gid == 0:
        return "root"
    return _userdb(ev).groups.get(ev.gid)
