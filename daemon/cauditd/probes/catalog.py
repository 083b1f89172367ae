"""The syscalls the probes know: x86_64 and i386 numbers, which arguments are strings or addresses.

One table drives the kernel side (the syscall_spec map and the SYSNR_* defines of syscalls.c), the
decoders (argument names of each event type) and the rules (rules.fields.SYSCALL_TYPES: the
evt.type names a rule may use). `compat` lists the i386 numbers of the same call, which a
64-bit kernel also serves through `int 0x80`: the probes map them to the x86_64 syscall they
are, so an i386 number is never read as an x86_64 one.
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
OPT_MSGHDR = 256
OPT_FCNTL_DUP = 512
OPT_RESOLVE_CWD = 1024
OPT_MMSG = 2048
SYSCALL_MAX = 512
NO_SYSCALL = 0xFFFF
SOCKETCALL_NATIVE = 0xFFFE  # compat_native of i386 socketcall: unpacked by the probe
I386_SOCKETCALL = 102


@dataclass(frozen=True, slots=True)
class Syscall:
    """One syscall: its number, argument names, and what the kernel reads for it.

    `path1`/`path2`/`str3` are indexes of C-string arguments, `addr`/`addrlen` of a socket
    address and its length, `deref` of a pointer to a u64 read at entry; NONE when absent.
    """

    name: str
    nr: int
    args: tuple[str, ...]
    family: str  # "file", "net", "fd", "priv", "process"
    path1: int = NONE
    path2: int = NONE
    str3: int = NONE
    addr: int = NONE
    addrlen: int = NONE
    deref: int = NONE
    opts: int = 0
    compat: tuple[int, ...] = ()  # i386 numbers (16-bit uid variants included)


def _s(name: str, nr: int, args: str, family: str, *compat: int, **kw: int) -> Syscall:
    return Syscall(name, nr, tuple(args.split()), family, compat=compat, **kw)


_NET = OPT_SOCK_FD0
_OPEN = OPT_OPEN_FILTER
# fmt: off
SYSCALLS: tuple[Syscall, ...] = (
    # process lifecycle: captured at entry, emitted by process.c
    _s("execve", 59, "filename argv envp", "process", 11),
    _s("execveat", 322, "dirfd filename argv envp flags", "process", 358),
    _s("exit", 60, "status", "process", 1),
    _s("exit_group", 231, "status", "process", 252),
    _s("clone", 56, "flags", "process", 120),
    _s("fork", 57, "", "process", 2),
    _s("vfork", 58, "", "process", 190),
    _s("clone3", 435, "uargs size", "process", 435, deref=0),
    _s("chdir", 80, "path", "process", 12, path1=0, opts=OPT_RESOLVE_CWD),
    _s("fchdir", 81, "fd", "process", 133, opts=OPT_RESOLVE_CWD),
    # files
    _s("open", 2, "path flags mode", "file", 5, path1=0, opts=_OPEN),
    _s("openat", 257, "dirfd path flags mode", "file", 295, path1=1, opts=_OPEN),
    _s("openat2", 437, "dirfd path how size", "file", 437, path1=1, deref=2, opts=_OPEN),
    _s("creat", 85, "path mode", "file", 8, path1=0, opts=_OPEN),
    _s("unlink", 87, "path", "file", 10, path1=0),
    _s("unlinkat", 263, "dirfd path flags", "file", 301, path1=1),
    _s("rename", 82, "oldpath newpath", "file", 38, path1=0, path2=1),
    _s("renameat", 264, "olddirfd oldpath newdirfd newpath", "file", 302, path1=1, path2=3),
    _s("renameat2", 316, "olddirfd oldpath newdirfd newpath flags", "file", 353,
       path1=1, path2=3),
    _s("mkdir", 83, "path mode", "file", 39, path1=0),
    _s("mkdirat", 258, "dirfd path mode", "file", 296, path1=1),
    _s("symlink", 88, "target linkpath", "file", 83, path1=0, path2=1),
    _s("symlinkat", 266, "target newdirfd linkpath", "file", 304, path1=0, path2=2),
    _s("link", 86, "oldpath newpath", "file", 9, path1=0, path2=1),
    _s("linkat", 265, "olddirfd oldpath newdirfd newpath flags", "file", 303, path1=1, path2=3),
    _s("chmod", 90, "path mode", "file", 15, path1=0),
    _s("fchmod", 91, "fd mode", "file", 94),
    _s("fchmodat", 268, "dirfd path mode", "file", 306, path1=1),
    _s("fchmodat2", 452, "dirfd path mode flags", "file", 452, path1=1),
    _s("chown", 92, "path uid gid", "file", 182, 212, path1=0),
    _s("fchown", 93, "fd uid gid", "file", 95, 207),
    _s("lchown", 94, "path uid gid", "file", 16, 198, path1=0),
    _s("fchownat", 260, "dirfd path uid gid flags", "file", 298, path1=1),
    _s("rmdir", 84, "path", "file", 40, path1=0),
    # network
    _s("socket", 41, "domain type protocol", "priv", 359, opts=OPT_SOCKET_RESULT),
    _s("connect", 42, "fd addr addrlen", "net", 362, addr=1, addrlen=2,
       opts=_NET | OPT_CONNECT_FILTER),
    _s("accept", 43, "fd addr addrlen", "net", addr=1, addrlen=2,
       opts=_NET | OPT_ADDRLEN_PTR | OPT_SOCKET_RESULT),
    _s("accept4", 288, "fd addr addrlen flags", "net", 364, addr=1, addrlen=2,
       opts=_NET | OPT_ADDRLEN_PTR | OPT_SOCKET_RESULT),
    _s("sendto", 44, "fd buf len flags addr addrlen", "net", 369, addr=4, addrlen=5,
       opts=_NET | OPT_REQUIRE_ADDR | OPT_CONNECT_FILTER),
    _s("sendmsg", 46, "fd msg flags", "net", 370, addr=1,
       opts=_NET | OPT_MSGHDR | OPT_REQUIRE_ADDR | OPT_CONNECT_FILTER),
    _s("sendmmsg", 307, "fd msgvec vlen flags", "net", 345, addr=1,
       opts=_NET | OPT_MSGHDR | OPT_MMSG | OPT_REQUIRE_ADDR | OPT_CONNECT_FILTER),
    _s("bind", 49, "fd addr addrlen", "net", 361, addr=1, addrlen=2, opts=_NET),
    _s("listen", 50, "fd backlog", "net", 363, opts=_NET),
    # the sender's address is written at exit; only receives that ask for it are emitted
    _s("recvfrom", 45, "fd buf len flags addr addrlen", "net", 371, addr=4, addrlen=5,
       opts=_NET | OPT_ADDRLEN_PTR | OPT_REQUIRE_ADDR),
    _s("recvmsg", 47, "fd msg flags", "net", 372, opts=_NET),
    # privilege and isolation
    _s("setuid", 105, "uid", "priv", 23, 213),
    _s("setgid", 106, "gid", "priv", 46, 214),
    _s("setreuid", 113, "ruid euid", "priv", 70, 203),
    _s("setregid", 114, "rgid egid", "priv", 71, 204),
    _s("setresuid", 117, "ruid euid suid", "priv", 164, 208),
    _s("setresgid", 119, "rgid egid sgid", "priv", 170, 210),
    _s("capset", 126, "header data", "priv", 185),
    _s("setns", 308, "fd nstype", "priv", 346),
    _s("unshare", 272, "flags", "priv", 310),
    _s("mount", 165, "source target fstype flags data", "priv", 21, path1=1, path2=0, str3=2),
    _s("umount2", 166, "target flags", "priv", 52, path1=0),
    _s("ptrace", 101, "request pid addr data", "priv", 26),
    _s("init_module", 175, "umod len uargs", "priv", 128),
    _s("finit_module", 313, "fd uargs flags", "priv", 350),
    _s("bpf", 321, "cmd attr size", "priv", 357),
    _s("memfd_create", 319, "name flags", "priv", 356, path1=0, opts=OPT_MEMFD_RESULT),
    _s("userfaultfd", 323, "flags", "priv", 374),
    _s("io_uring_setup", 425, "entries params", "priv", 425),
    _s("open_by_handle_at", 304, "mount_fd handle flags", "priv", 342),
    # descriptors placed on stdio: dup*, fcntl(F_DUPFD*)
    _s("dup", 32, "oldfd", "fd", 41, opts=OPT_LOW_NEWFD | OPT_SOCK_FD0),
    _s("dup2", 33, "oldfd newfd", "fd", 63, opts=OPT_LOW_NEWFD | OPT_SOCK_FD0),
    _s("dup3", 292, "oldfd newfd flags", "fd", 330, opts=OPT_LOW_NEWFD | OPT_SOCK_FD0),
    _s("fcntl", 72, "fd cmd arg", "fd", 55, 221,
       opts=OPT_LOW_NEWFD | OPT_SOCK_FD0 | OPT_FCNTL_DUP),
)
# fmt: on

BY_NAME: dict[str, Syscall] = {s.name: s for s in SYSCALLS}
BY_NR: dict[int, Syscall] = {s.nr: s for s in SYSCALLS}
BY_COMPAT_NR: dict[int, Syscall] = {nr: s for s in SYSCALLS for nr in s.compat}
# i386 socketcall(call, args): the calls it multiplexes (linux/net.h SYS_*), by name.
SOCKETCALLS: dict[int, str] = {
    1: "socket", 2: "bind", 3: "connect", 4: "listen", 5: "accept", 11: "sendto",
    16: "sendmsg", 18: "accept4", 20: "sendmmsg",
}
SOCKETCALL_SLOTS = 21
# Handled at sys_exit alone with the kernel's layout (syscall_spec.exit): opens, judged by the
# file the kernel opened (EXIT_OPEN, opens.h), and every other call but those AT_ENTRY, their
# arguments read from the registers the kernel saved at entry (EXIT_LATE): no per-call stash.
AT_EXIT = frozenset(("open", "openat", "openat2", "creat"))
EXIT_OPEN, EXIT_LATE = 1, 2

# Always traced: the process table needs them (exec argv, fork flags, exit status, cwd).
ALWAYS_ON = frozenset(
    ("execve", "execveat", "exit", "exit_group", "clone", "fork", "vfork", "clone3", "chdir",
     "fchdir")
)
# Stashed at entry only: their events come from the sched_process_* tracepoints (process.c).
EMITTED_ELSEWHERE = frozenset(ALWAYS_ON - {"chdir", "fchdir"})
# Stashed at sys_enter even with the layout: what must be read before the call (exec's argv,
# the exit status), what process.c reads of the call in flight (fork flags), and sendmmsg (a
# stash per message some rule may want). An i386 call is always stashed.
AT_ENTRY = EMITTED_ELSEWHERE | {"sendmmsg"}
# Names rules use that the probes deliver from other syscalls' records.
EVENT_ALIASES = {"procexit": ("exit", "exit_group")}
# The fork and exit events: held in the kernel (probes/lifecycle.h) unless a rule matches one.
LIFECYCLE = frozenset(EMITTED_ELSEWHERE - {"execve", "execveat"} | set(EVENT_ALIASES))
# Side effects other syscalls need: dup2's oldfd_is_socket and connect's sock_type learn from
# socket/accept results; exec's memfd flag from memfd_create results.
_FD_SOURCES = ("socket", "accept", "accept4")
SIDE_EFFECTS = {
    "dup": _FD_SOURCES,
    "dup2": _FD_SOURCES,
    "dup3": _FD_SOURCES,
    "fcntl": _FD_SOURCES,
    "connect": ("socket",),
    "bind": ("socket",),
    "listen": ("socket",),
    "sendto": ("socket",),
    "sendmsg": ("socket",),
    "sendmmsg": ("socket",),
    "recvfrom": ("socket",),
    "recvmsg": ("socket",),
    "execve": ("memfd_create",),
}


def nr_defines() -> dict[str, int | str]:
    """The SYSNR_* constants syscalls.c and process.c test against (not NR_*: the kernel
    headers BCC includes define NR_OPEN, the fd limit, which would silently win), and the
    syscall_spec.exit modes."""
    names = ("execve", "execveat", "exit", "exit_group", "clone", "clone3", "socket", "dup",
             "open", "openat", "openat2", "creat", "connect", "accept", "accept4",
             "renameat2", "unlinkat", "mkdirat", "symlinkat", "linkat", "sendto", "sendmsg")
    defines: dict[str, int | str] = {f"SYSNR_{n.upper()}": BY_NAME[n].nr for n in names}
    defines["SYSCALL_MAX"] = SYSCALL_MAX
    defines["EXIT_OPEN"], defines["EXIT_LATE"] = EXIT_OPEN, EXIT_LATE
    return defines


def plan(names: set[str] | None) -> dict[str, tuple[bool, bool]]:
    """(enabled, emit) per syscall name for a set of needed names (None: everything)."""
    wanted = set(BY_NAME) if names is None else {n for n in names if n in BY_NAME}
    wanted |= ALWAYS_ON
    stash = set(wanted)
    for name in wanted:
        stash.update(SIDE_EFFECTS.get(name, ()))
    return {n: (n in stash, n in wanted and n not in EMITTED_ELSEWHERE) for n in stash}


def lifecycle_wanted(names: set[str] | None) -> bool:
    """Whether every fork and exit must be sent at once (some rule matches one; None:
    everything is wanted), rather than only those of processes otherwise named."""
    return names is None or not LIFECYCLE.isdisjoint(names)


def _flags(spec: Syscall, stash: bool, emit: bool, layout: bool) -> tuple[int, int, int]:
    """(enter, emit, exit) of a traced syscall: with the layout, all but those AT_ENTRY move
    to the exit."""
    if not layout or not stash or spec.name in AT_ENTRY:
        return int(stash), int(emit), 0
    return 0, int(emit), EXIT_OPEN if spec.name in AT_EXIT else EXIT_LATE


def spec_entries(names: set[str] | None, layout: bool) -> dict[int, dict[str, int]]:
    """The syscall_spec map's entries by index: each x86_64 syscall's own spec, and on the
    index of each i386 number the x86_64 syscall it maps to (with the layout only: without
    it the probe cannot tell a compat call, and traces x86_64 numbers alone)."""
    planned = plan(names)
    entries: dict[int, dict[str, int]] = {}
    for spec in SYSCALLS:
        stash, emit = planned.get(spec.name, (False, False))
        enter, emit_flag, exit_ = _flags(spec, stash, emit, layout)
        entries[spec.nr] = {
            "enter": enter, "emit": emit_flag, "exit": exit_, "path1": spec.path1,
            "path2": spec.path2, "str3": spec.str3, "addr": spec.addr,
            "addrlen": spec.addrlen, "deref": spec.deref, "opts": spec.opts,
            "compat_native": NO_SYSCALL,
        }
    if not layout:
        return entries
    blank = {"path1": NONE, "path2": NONE, "str3": NONE, "addr": NONE, "addrlen": NONE,
             "deref": NONE, "compat_native": NO_SYSCALL}
    for nr, spec in BY_COMPAT_NR.items():
        entry = entries.setdefault(nr, dict(blank))
        native = entries[spec.nr]
        entry.update(compat_native=spec.nr,
                     compat_enter=int(native["enter"] or native["exit"] == EXIT_LATE),
                     compat_exit=EXIT_OPEN if native["exit"] == EXIT_OPEN else 0)
    socketcall = entries.setdefault(I386_SOCKETCALL, dict(blank))
    targets = socketcall_entries(names).values()
    socketcall.update(compat_native=SOCKETCALL_NATIVE,
                      compat_enter=int(any(t != NO_SYSCALL for t in targets)))
    return entries


def socketcall_entries(names: set[str] | None) -> dict[int, int]:
    """The i386 socketcall calls by number, each to its x86_64 syscall (NO_SYSCALL: untraced)."""
    planned = plan(names)
    return {call: BY_NAME[name].nr if planned.get(name, (False, False))[0] else NO_SYSCALL
            for call, name in SOCKETCALLS.items()}
