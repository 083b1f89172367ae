"""The syscalls the probes know (x86_64): numbers, which arguments are strings or addresses.

One table drives the kernel side (the syscall_spec map and the NR_* defines of syscalls.c) and
the decoders (argument names of each event type).
"""

from __future__ import annotations

from dataclasses import dataclass

NONE = 255
OPT_ADDRLEN_PTR = 1
OPT_REQUIRE_ADDR = 2
OPT_SOCKET_RESULT = 4
OPT_SOCK_FD0 = 8
OPT_LOW_NEWFD = 16
OPT_MEMFD_RESULT = 32
OPT_OPEN_FILTER = 64
OPT_CONNECT_FILTER = 128
SYSCALL_MAX = 512


@dataclass(frozen=True, slots=True)
class Syscall:
    """One syscall: its number, argument names, and what the kernel reads for it.

    `path1`/`path2`/`str3` are indexes of C-string arguments, `addr`/`addrlen` of a socket
    address and its length, `deref` of a pointer to a u64 read at entry; NONE when absent.
    """

    name: str
    nr: int
    args: tuple[str, ...]
    family: str  # "file", "net", "priv", "process"
    path1: int = NONE
    path2: int = NONE
    str3: int = NONE
    addr: int = NONE
    addrlen: int = NONE
    deref: int = NONE
    opts: int = 0


def _s(name: str, nr: int, args: str, family: str, **kw: int) -> Syscall:
    return Syscall(name, nr, tuple(args.split()), family, **kw)


_NET = OPT_SOCK_FD0
_OPEN = OPT_OPEN_FILTER
# fmt: off
SYSCALLS: tuple[Syscall, ...] = (
    # process lifecycle: captured at entry, emitted by process.c
    _s("execve", 59, "filename argv envp", "process"),
    _s("execveat", 322, "dirfd filename argv envp flags", "process"),
    _s("exit", 60, "status", "process"),
    _s("exit_group", 231, "status", "process"),
    _s("clone", 56, "flags", "process"),
    _s("fork", 57, "", "process"),
    _s("vfork", 58, "", "process"),
    _s("clone3", 435, "uargs size", "process", deref=0),
    _s("chdir", 80, "path", "process", path1=0),
    # files
    _s("open", 2, "path flags mode", "file", path1=0, opts=_OPEN),
    _s("openat", 257, "dirfd path flags mode", "file", path1=1, opts=_OPEN),
    _s("openat2", 437, "dirfd path how size", "file", path1=1, deref=2, opts=_OPEN),
    _s("creat", 85, "path mode", "file", path1=0, opts=_OPEN),
    _s("unlink", 87, "path", "file", path1=0),
    _s("unlinkat", 263, "dirfd path flags", "file", path1=1),
    _s("rename", 82, "oldpath newpath", "file", path1=0, path2=1),
    _s("renameat", 264, "olddirfd oldpath newdirfd newpath", "file", path1=1, path2=3),
    _s("renameat2", 316, "olddirfd oldpath newdirfd newpath flags", "file", path1=1, path2=3),
    _s("mkdir", 83, "path mode", "file", path1=0),
    _s("mkdirat", 258, "dirfd path mode", "file", path1=1),
    _s("symlink", 88, "target linkpath", "file", path1=0, path2=1),
    _s("symlinkat", 266, "target newdirfd linkpath", "file", path1=0, path2=2),
    _s("link", 86, "oldpath newpath", "file", path1=0, path2=1),
    _s("linkat", 265, "olddirfd oldpath newdirfd newpath flags", "file", path1=1, path2=3),
    _s("chmod", 90, "path mode", "file", path1=0),
    _s("fchmod", 91, "fd mode", "file"),
    _s("fchmodat", 268, "dirfd path mode", "file", path1=1),
    _s("fchmodat2", 452, "dirfd path mode flags", "file", path1=1),
    _s("chown", 92, "path uid gid", "file", path1=0),
    _s("fchown", 93, "fd uid gid", "file"),
    _s("lchown", 94, "path uid gid", "file", path1=0),
    _s("fchownat", 260, "dirfd path uid gid flags", "file", path1=1),
    _s("rmdir", 84, "path", "file", path1=0),
    # network
    _s("socket", 41, "domain type protocol", "priv", opts=OPT_SOCKET_RESULT),
    _s("connect", 42, "fd addr addrlen", "net", addr=1, addrlen=2,
       opts=_NET | OPT_CONNECT_FILTER),
    _s("accept", 43, "fd addr addrlen", "net", addr=1, addrlen=2,
       opts=_NET | OPT_ADDRLEN_PTR | OPT_SOCKET_RESULT),
    _s("accept4", 288, "fd addr addrlen flags", "net", addr=1, addrlen=2,
       opts=_NET | OPT_ADDRLEN_PTR | OPT_SOCKET_RESULT),
    _s("sendto", 44, "fd buf len flags addr addrlen", "net", addr=4, addrlen=5,
       opts=_NET | OPT_REQUIRE_ADDR | OPT_CONNECT_FILTER),
    _s("bind", 49, "fd addr addrlen", "net", addr=1, addrlen=2, opts=_NET),
    _s("listen", 50, "fd backlog", "net", opts=_NET),
    # the sender's address is written at exit; only receives that ask for it are emitted
    _s("recvfrom", 45, "fd buf len flags addr addrlen", "net", addr=4, addrlen=5,
       opts=_NET | OPT_ADDRLEN_PTR | OPT_REQUIRE_ADDR),
    _s("recvmsg", 47, "fd msg flags", "net", opts=_NET),
    # privilege and isolation
    _s("setuid", 105, "uid", "priv"),
    _s("setgid", 106, "gid", "priv"),
    _s("setreuid", 113, "ruid euid", "priv"),
    _s("setregid", 114, "rgid egid", "priv"),
    _s("setresuid", 117, "ruid euid suid", "priv"),
    _s("setresgid", 119, "rgid egid sgid", "priv"),
    _s("capset", 126, "header data", "priv"),
    _s("setns", 308, "fd nstype", "priv"),
    _s("unshare", 272, "flags", "priv"),
    _s("mount", 165, "source target fstype flags data", "priv", path1=1, path2=0, str3=2),
    _s("umount2", 166, "target flags", "priv", path1=0),
    _s("ptrace", 101, "request pid addr data", "priv"),
    _s("init_module", 175, "umod len uargs", "priv"),
    _s("finit_module", 313, "fd uargs flags", "priv"),
    _s("bpf", 321, "cmd attr size", "priv"),
    _s("memfd_create", 319, "name flags", "priv", path1=0, opts=OPT_MEMFD_RESULT),
    _s("userfaultfd", 323, "flags", "priv"),
    _s("dup", 32, "oldfd", "priv", opts=OPT_LOW_NEWFD | OPT_SOCK_FD0),
    _s("dup2", 33, "oldfd newfd", "priv", opts=OPT_LOW_NEWFD | OPT_SOCK_FD0),
    _s("dup3", 292, "oldfd newfd flags", "priv", opts=OPT_LOW_NEWFD | OPT_SOCK_FD0),
)
# fmt: on

BY_NAME: dict[str, Syscall] = {s.name: s for s in SYSCALLS}
BY_NR: dict[int, Syscall] = {s.nr: s for s in SYSCALLS}

# Always traced: the process table needs them (exec argv, fork flags, exit status, cwd).
ALWAYS_ON = frozenset(
    ("execve", "execveat", "exit", "exit_group", "clone", "fork", "vfork", "clone3", "chdir")
)
# Stashed at entry only: their events come from the sched_process_* tracepoints (process.c).
EMITTED_ELSEWHERE = frozenset(ALWAYS_ON - {"chdir"})
# Names rules use that the probes deliver from other syscalls' records.
EVENT_ALIASES = {"procexit": ("exit", "exit_group")}
# Side effects other syscalls need: dup2's oldfd_is_socket and connect's sock_type learn from
# socket/accept results; exec's memfd flag from memfd_create results.
SIDE_EFFECTS = {
    "dup": ("socket", "accept", "accept4"),
    "dup2": ("socket", "accept", "accept4"),
    "dup3": ("socket", "accept", "accept4"),
    "connect": ("socket",),
    "bind": ("socket",),
    "listen": ("socket",),
    "sendto": ("socket",),
    "recvfrom": ("socket",),
    "recvmsg": ("socket",),
    "execve": ("memfd_create",),
}


def nr_defines() -> dict[str, int | str]:
    """The NR_* constants syscalls.c and process.c test against."""
    names = ("execve", "execveat", "exit", "exit_group", "clone", "clone3", "socket", "dup",
             "open", "openat2", "creat")
    defines: dict[str, int | str] = {f"NR_{n.upper()}": BY_NAME[n].nr for n in names}
    defines["SYSCALL_MAX"] = SYSCALL_MAX
    return defines


def plan(names: set[str] | None) -> dict[str, tuple[bool, bool]]:
    """(enabled, emit) per syscall name for a set of needed names (None: everything)."""
    wanted = set(BY_NAME) if names is None else {n for n in names if n in BY_NAME}
    wanted |= ALWAYS_ON
    stash = set(wanted)
    for name in wanted:
        stash.update(SIDE_EFFECTS.get(name, ()))
    return {n: (n in stash, n in wanted and n not in EMITTED_ELSEWHERE) for n in stash}
