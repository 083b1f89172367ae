"""The process table: pid to ProcessInfo (exe, argv, cwd, parent links), fed by fork/exec/exit.

Seeded from /proc at start, bounded in size, exited processes kept for a grace period so late
events of their children still name them. It also completes events with what only user space
knows: absolute paths (from the directory the kernel reported, else the process's cwd), exec's
cwd and tty, fileless, upper-layer and container-runtime executables, the local address of a
listening socket (from its bind), and shells wired to the network through pipes (pipes.py).
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import stat
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cauditd import text
from cauditd.containers.cgroups import container_from_path
from cauditd.containers.runtime_binaries import RuntimeBinaries, kernel_dev
from cauditd.events import (
    COMM_LEN,
    HOST_ID,
    Event,
    ExecEvent,
    ExitEvent,
    FileEvent,
    ForkEvent,
    NetSyscallEvent,
    ProcessInfo,
    SyscallEvent,
)
from cauditd.pipes import PipeGraph

AT_FDCWD = -100
PROC_READ_MAX = 65536  # stat, status and cgroup are a few hundred bytes; never read more
CMDLINE_MAX = 4096  # argv kept per process from /proc (the probe keeps 16 x 128 bytes)
_FD_PATH_PREFIXES = ("/dev/fd/", "/proc/self/fd/")
_NO_RESOLVE = frozenset(("symlink", "symlinkat"))
_CWD_CHANGES = frozenset(("chdir", "fchdir"))
_NETWORKED = frozenset(("connect", "accept", "accept4"))  # what makes a process a relay
O_ACCMODE, O_WRONLY = 0o3, 0o1


def normalize_path(path: str) -> str:
    """An absolute path without "//", "." or ".." components, so that "/etc/./shadow" and
    "//etc/shadow" meet rules about /etc/shadow (lexically, as Falco does)."""
    clean = posixpath.normpath(path)
    return "/" + clean.lstrip("/") if clean.startswith("//") else clean
# runc's stages (runc:[0:PARENT], [1:CHILD], [2:INIT]): the one that execs is the container's
# entrypoint (or a `docker exec`'d command).
_RUNC_COMM_PREFIX = "runc:["
UpperDirOf = Callable[[str], str | None]


class ProcessTable:
    """pid -> ProcessInfo for the processes the probes report (and /proc showed at start).

    `apply(event)` is the per-event entry: it updates the table from fork/exec/exit/chdir and
    sets `event.process`. `upper_dir_of(container_id)` gives a container's overlay upper dir on
    the host (None when unknown) for `is_exe_upper_layer`.
    """

    def __init__(
        self,
        max_size: int = 65536,
        *,
        exit_grace_s: float = 5.0,
        upper_dir_of: UpperDirOf | None = None,
        proc_root: str = "/proc",
        runtimes: RuntimeBinaries | None = None,
    ) -> None:
        self.max_size = max_size
        self.exit_grace_s = exit_grace_s
        self.runtimes = runtimes or RuntimeBinaries()
        self.pipes = PipeGraph()
        self._upper_dir_of = upper_dir_of or (lambda _cid: None)
        self._proc = Path(proc_root)
        self._procs: dict[int, ProcessInfo] = {}
        # Both bounded like the table: past max_size the oldest exit or bind is forgotten.
        self._exited: deque[tuple[float, int, ProcessInfo]] = deque(maxlen=max_size)
        self._sockets: dict[tuple[int, int], tuple[str, int]] = {}

    def __len__(self) -> int:
        return len(self._procs)

    def get(self, pid: int) -> ProcessInfo | None:
        return self._procs.get(pid)

    def container_ids(self) -> Counter[str]:
        """How many processes the table holds per container id (HOST_ID for the host)."""
        return Counter(proc.container_id for proc in self._procs.values())

    # --- seeding -------------------------------------------------------------------------

    def seed(self, found: dict[int, ProcessInfo] | None = None) -> int:
        """Add the processes of /proc (or `found`, from read_proc in a thread); entries the
        probes created meanwhile win. Returns the table size."""
        for pid, info in (self.read_proc() if found is None else found).items():
            if len(self._procs) >= self.max_size:
                break
            self._procs.setdefault(pid, info)
        for info in self._procs.values():
            if info.parent is None:
                info.parent = self._procs.get(info.ppid)
        return len(self._procs)

    def read_proc(self) -> dict[int, ProcessInfo]:
        """Every process of /proc now (pid, parent, exe, argv, cwd, container); no table change.

        What a process holds never stops the scan: one whose stat cannot be read or parsed is
        left out, the others are kept."""
        found: dict[int, ProcessInfo] = {}
        for entry in self._proc.iterdir():
            if entry.name.isdigit() and len(found) < self.max_size:
                info = self._from_proc(int(entry.name))
                if info is not None:
                    found[info.pid] = info
        return found

    def _from_proc(self, pid: int) -> ProcessInfo | None:
        """One process from /proc/<pid>, read as bytes: its comm, argv and cgroup are whatever
        the process chose (text.decode keeps bytes that are not UTF-8 as surrogate escapes)."""
        base = self._dir(pid)
        stat = ProcStat.read(base)
        if stat is None:
            return None
        info = ProcessInfo(
            pid=pid,
            ppid=stat.ppid,
            comm=stat.comm,
            args=_cmdline(base),
            tty=stat.tty,
            start_ns=stat.start_ticks * (1_000_000_000 // os.sysconf("SC_CLK_TCK")),
            exe=_readlink(base / "exe"),
            cwd=_readlink(base / "cwd"),
            container_id=self._container_of(base),
        )
        for line in _read_lines(base / "status"):
            if line.startswith((b"Uid:", b"Gid:")):
                with contextlib.suppress(ValueError, IndexError):
                    setattr(info, "uid" if line[:1] == b"U" else "gid", int(line.split()[2]))
        return info

    def _container_of(self, base: Path) -> str:
        for line in _read_lines(base / "cgroup"):
            if line.startswith(b"0::"):
                found = container_from_path(text.decode(line[3:], "cgroup"))
                return found.container_id if found else HOST_ID
        return HOST_ID

    # --- the per-event path --------------------------------------------------------------

    def apply(self, event: Event) -> None:
        """Update the table from `event` and attach the event's process (and complete it)."""
        if not isinstance(event, SyscallEvent):
            return
        if len(self._procs) >= self.max_size:
            self._shrink()
        if isinstance(event, ExecEvent):
            event.process = self._on_exec(event)
            self._wire(event.process)
            return
        proc = self._lookup(event)
        event.process = proc
        if isinstance(event, ForkEvent):
            self._on_fork(event, proc)
        elif isinstance(event, ExitEvent):
            self._exited.append((time.monotonic() + self.exit_grace_s, proc.pid, proc))
        elif isinstance(event, FileEvent):
            self._absolute_paths(event, proc)
            self._fifo_opened(event, proc)
        elif isinstance(event, NetSyscallEvent):
            self._socket_addresses(event)
            self._connected(event, proc)
        elif event.type in _CWD_CHANGES and event.ret == 0:
            self._cwd_changed(event, proc)

    def expire(self, now: float | None = None) -> int:
        """Forget processes that exited more than the grace period ago; returns how many."""
        now = time.monotonic() if now is None else now
        gone = 0
        while self._exited and self._exited[0][0] <= now:
            _deadline, pid, proc = self._exited.popleft()
            if self._procs.get(pid) is proc:
                del self._procs[pid]
                self.pipes.forget(pid)
                gone += 1
        if gone:
            live = set(self._procs)
            self._sockets = {k: v for k, v in self._sockets.items() if k[0] in live}
        return gone

    def _lookup(self, event: SyscallEvent) -> ProcessInfo:
        proc = self._procs.get(event.pid)
        if proc is None:
            proc = self._from_proc(event.pid) or ProcessInfo(
                pid=event.pid, comm=event.comm, uid=event.uid, gid=event.gid
            )
            proc.container_id = event.container.id
            proc.parent = self._procs.get(proc.ppid)
            proc.is_container_runtime = self._runtime_from_proc(proc)
            self._procs[proc.pid] = proc
        if event.exe_ino and not proc.exe_known and not isinstance(event, ExecEvent):
            # The first event that names the executable (syscall and fork records do; opens
            # do not): the kernel's word replaces what /proc could say.
            proc.exe_known = True
            proc.is_container_runtime = self.runtimes.is_runtime(
                event.exe_dev, event.exe_ino, proc.exe, event.exe_foreign_mnt_ns)
        return proc

    def _runtime_from_proc(self, proc: ProcessInfo) -> bool:
        """A process first seen by a syscall, with no exec in its cgroup (runc's init stages
        join the container's cgroup after their exec): the runtime when /proc shows it running
        a runtime binary (while it lives), or the sealed memfd copy of itself a runtime parent
        made. The first event that names its executable decides for good."""
        identity = self._exe_identity(proc.pid)
        if identity is not None and self.runtimes.is_runtime(*identity, proc.exe, False):
            return True
        parent = self._exe_identity(proc.ppid) if proc.exe.startswith("/memfd:") else None
        return parent is not None and self.runtimes.is_runtime(*parent, "", False)

    def _exe_identity(self, pid: int) -> tuple[int, int] | None:
        try:
            st = os.stat(self._dir(pid) / "exe")
        except OSError:
            return None
        return kernel_dev(st.st_dev), st.st_ino

    def _on_fork(self, event: ForkEvent, parent: ProcessInfo) -> None:
        child = ProcessInfo(
            pid=event.child_pid,
            ppid=parent.pid,
            exe=parent.exe,
            args=parent.args,
            comm=event.comm,
            cwd=parent.cwd,
            uid=event.uid,
            gid=event.gid,
            tty=parent.tty,
            start_ns=event.ts_ns,
            container_id=event.container.id,
            is_exe_upper_layer=parent.is_exe_upper_layer,
            is_exe_from_memfd=parent.is_exe_from_memfd,
            is_container_runtime=parent.is_container_runtime,
            exe_known=parent.exe_known,
            exe_name=parent.exe_name,
            stdio_wired=parent.stdio_wired,
            stdio=parent.stdio,
            parent=parent,
        )
        self._procs[child.pid] = child
        self.pipes.inherit(parent.pid, child.pid)

    def _on_exec(self, event: ExecEvent) -> ProcessInfo:
        proc = self._lookup(event)
        container = event.container
        first = event.ns_pid == 1 if event.ns_pid else proc.comm.startswith(_RUNC_COMM_PREFIX)
        if container.pid == 0 and not container.is_host and first:
            # The runtime has not told the pid (not answered yet, or inspected while created or
            # after exit: a short container): the kernel says which exec is pid 1 in the
            # container; without the kernel's layout, runc's first exec there is its entrypoint.
            container.pid = event.pid
        if event.described:
            # The kernel described the process as it started; its cwd is missing only when
            # outside its root or too long for the record: then /proc's, while it lives.
            alive = False
            cwd = event.cwd or _readlink(self._dir(event.pid) / "cwd") or proc.cwd
        else:
            base = self._dir(event.pid)
            live_cwd = _readlink(base / "cwd")  # empty once the process is gone
            alive = bool(live_cwd)
            cwd = live_cwd or proc.cwd
            event.tty = _tty(base) if alive else proc.tty
        if event.exe_ino:
            exe = self._exec_by_identity(event, proc, cwd)
        else:
            exe = self._exec_by_path(event, proc, self._dir(event.pid), cwd, alive)
        event.cwd = cwd
        if not event.exe_layer_known or event.container.id == HOST_ID:
            event.is_exe_upper_layer = self._in_upper_layer(event.container.id, exe)
        event.is_exe_upper_layer |= event.is_exe_unlinked and not event.is_exe_from_memfd
        # `ld.so /bin/nc -e sh`: the kernel runs the loader, which maps the program; `busybox
        # sh`: busybox runs its sh. The process is named by the program it runs (the comm says
        # "busybox", or whatever path was exec'd; exepath stays the file the kernel runs). By
        # the kernel's argv only: /proc's may already be a later image's (`sh -c 'cmd; sleep
        # 1'` execs sleep in place), and would name the shell "sleep".
        proc.exe_name = program_name(exe, event.argv)
        if not event.argv:
            # argv strings on a page not yet faulted in (a forked child's fexecve) cannot be
            # read in the probe; the new image's argv is in /proc while the process lives.
            event.argv = _cmdline(self._dir(event.pid))
            event.argv = event.argv or ((event.filename or exe or event.exe),)
        proc.exe, proc.args = exe, event.argv
        proc.cwd, proc.tty = cwd, event.tty
        proc.uid, proc.gid, proc.container_id = event.uid, event.gid, event.container.id
        proc.is_exe_upper_layer = event.is_exe_upper_layer
        proc.is_exe_from_memfd = event.is_exe_from_memfd
        proc.start_ns = proc.start_ns or event.ts_ns
        proc.stdio, proc.parent_inet = event.stdio, event.parent_inet
        if event.stdio:
            pipes = [fd.pipe for fd in event.stdio]
            self.pipes.set_stdio(proc.pid, pipes[0], pipes[1:], fifos_kept=event.fifos_kept)
            # a parent the table does not follow (the runtime's, on the host) would never be
            # forgotten: its exit is not seen
            if (event.parent_feeds or event.parent_drains) and proc.ppid in self._procs:
                self.pipes.parent_ends(proc.ppid, feeds=pipes[0] if event.parent_feeds else None,
                                       drains=pipes[1] if event.parent_drains else None,
                                       networked=event.parent_inet)
        return proc

    def _dir(self, pid: int) -> Path:
        """/proc/<pid>: what the kernel's records did not tell, read while the process lives."""
        return self._proc / str(pid)

    def _exec_by_identity(self, event: ExecEvent, proc: ProcessInfo, cwd: str) -> str:
        """The kernel named the file the process now runs (`event.exe`, canonical): whether it
        is the container runtime, and (the loader's case) what program it runs. Returns the
        exe."""
        asked = event.filename
        if not asked.startswith("/"):
            asked = normalize_path(posixpath.join(cwd or "/", asked))
        reexec = asked == "/proc/self/exe" or asked.startswith(_FD_PATH_PREFIXES)
        runtime = self.runtimes.is_runtime(event.exe_dev, event.exe_ino, event.exe,
                                           event.exe_foreign_mnt_ns)
        # A runtime re-executing itself, or the sealed copy of itself it runs from a memfd
        # (runc does both), stays the runtime; nothing else can become it by a re-exec.
        proc.is_container_runtime = runtime or (reexec and proc.is_container_runtime)
        proc.exe_known = True
        event.is_exe_from_memfd = event.is_exe_from_memfd or event.exe.startswith("/memfd:")
        if asked == "/proc/self/exe":
            # The same image again: it keeps its comm (the kernel's new one says "exe").
            proc.comm = proc.comm or event.comm
        else:
            proc.comm = event.comm
        return event.exe

    def _exec_by_path(self, event: ExecEvent, proc: ProcessInfo, base: Path, cwd: str,
                      alive: bool) -> str:
        """Without the kernel's layout: the exe from the path asked for and /proc."""
        exe = event.exe
        same_image = exe == "/proc/self/exe"
        if same_image:
            # Re-executing itself (runc does, to mount its binary read-only): the same image,
            # so the process keeps its exe and name ("runc", or the kernel's comm of a runc
            # that runs from a memfd copy: "runc:[1:CHILD]", not the "exe" this exec sets),
            # and the runtime's exceptions keep applying.
            exe = proc.exe
        elif not exe.startswith("/"):
            exe = posixpath.normpath(posixpath.join(cwd or "/", exe))
        # Only an exec through an fd path can be a memfd; reading /proc/<pid>/exe for others
        # could see a later exec of the same pid and mislabel this one.
        via_fd = exe.startswith(_FD_PATH_PREFIXES)
        real = _readlink(base / "exe") if alive and via_fd else ""
        if real.startswith("/memfd:"):
            event.is_exe_from_memfd = True
            exe = real
        elif via_fd:
            # fexecve: the path names no file (runc re-executing its memfd copy as /dev/fd/6
            # would be named "6"); the table keeps no exe, so proc.name is the kernel's comm.
            exe = ""
        proc.comm = proc.comm if same_image and proc.comm else event.comm
        return exe

    def _in_upper_layer(self, container_id: str, exe: str) -> bool:
        """A file at `exe` in the container's writable layer (written since it started). Not a
        directory: runc 1.1 runs its init from a detached bind mount of its binary, whose path
        the kernel walk gives as "/", which is the upper layer's own root."""
        upper = self._upper_dir_of(container_id) if container_id != HOST_ID else None
        if not upper or not exe.startswith("/"):
            return False
        try:
            return not stat.S_ISDIR(os.lstat(upper + exe).st_mode)
        except OSError:
            return False

    def _absolute_paths(self, event: FileEvent, proc: ProcessInfo) -> None:
        if event.resolved:
            pass  # the kernel gave the file it opened: canonical already
        elif not event.path and event.dirfd >= 0:  # fchmod/fchown: the fd's path, while it lives
            event.path = _readlink(self._dir(event.pid) / "fd" / str(event.dirfd))
        elif event.base and event.path and not event.path.startswith("/"):
            event.path = normalize_path(posixpath.join(event.base, event.path))
        elif event.type not in _NO_RESOLVE:
            event.path = self._absolute(event.pid, proc.cwd, event.dirfd, event.path)
        if event.target:
            newdirfd = int(event.args.get("newdirfd", event.dirfd))
            if event.base and newdirfd == event.dirfd and not event.target.startswith("/"):
                event.target = normalize_path(posixpath.join(event.base, event.target))
            else:
                event.target = self._absolute(event.pid, proc.cwd, newdirfd, event.target)

    def _cwd_changed(self, event: SyscallEvent, proc: ProcessInfo) -> None:
        """chdir/fchdir: the new cwd as the kernel resolved it, else from the path given."""
        resolved = event.args.get("cwd")
        if resolved:
            proc.cwd = str(resolved)
        elif event.type == "chdir":
            proc.cwd = self._absolute(event.pid, proc.cwd, AT_FDCWD, str(event.args["path"]))

    # --- shells wired to the network through pipes --------------------------------------

    def _fifo_opened(self, event: FileEvent, proc: ProcessInfo) -> None:
        if event.ret < 0 or not stat.S_ISFIFO(event.file_mode):
            return
        writes = event.flags & O_ACCMODE != 0
        reads = event.flags & O_ACCMODE != O_WRONLY
        for read in (True, False):
            if (reads if read else writes):
                self.pipes.opened(proc.pid, (event.dev, event.ino), read=read)
        self._wire(proc)

    def _connected(self, event: NetSyscallEvent, proc: ProcessInfo) -> None:
        """A connect, or an accept (a listener feeding a shell through pipes is a bind shell's
        relay as a connecting one is a reverse shell's)."""
        if event.type in _NETWORKED and event.family in (2, 10):
            self.pipes.networked.add(proc.pid)
            self._wire(proc)

    def _wire(self, proc: ProcessInfo) -> None:
        """Mark the shells wired to the network through the pipes `proc` holds, on themselves
        and on `proc` (whose event may be the one that closed the loop)."""
        wired = [self._procs[pid] for pid in self.pipes.wired_near(proc.pid)
                 if pid in self._procs]
        if not wired:
            return
        names = tuple(sorted({p.name for p in wired}))
        for member in (*wired, proc):
            member.stdio_wired = names

    def _absolute(self, pid: int, cwd: str, dirfd: int, path: str) -> str:
        if not path:
            return path
        if path.startswith("/"):
            return normalize_path(path)
        if dirfd == AT_FDCWD:
            base = _readlink(self._dir(pid) / "cwd") or cwd
        else:
            base = _readlink(self._dir(pid) / "fd" / str(dirfd))
        return normalize_path(posixpath.join(base, path)) if base.startswith("/") else path

    def _socket_addresses(self, event: NetSyscallEvent) -> None:
        key = (event.pid, event.fd)
        if event.type == "bind" and event.ret == 0 and event.addr:
            if len(self._sockets) >= self.max_size:
                del self._sockets[next(iter(self._sockets))]
            self._sockets[key] = (event.addr, event.port)
        elif event.type == "listen" and not event.addr and key in self._sockets:
            event.addr, event.port = self._sockets[key]

    def _shrink(self) -> None:
        """Make room for one: exited processes go first, then the oldest entries."""
        self.expire(float("inf"))
        while len(self._procs) >= self.max_size:
            pid = next(iter(self._procs))
            del self._procs[pid]
            self.pipes.forget(pid)


_LOADER_NAMES = ("ld-linux", "ld-musl-", "ld.so", "ld64.so")
_MULTICALL_NAMES = ("busybox", "toybox")
# ld.so's options that take a value, and those that mean it will not run the program.
_LOADER_VALUE_OPTIONS = frozenset(("--library-path", "--preload", "--argv0", "--audit",
                                   "--inhibit-rpath", "--glibc-hwcaps-prepend",
                                   "--glibc-hwcaps-mask"))
_LOADER_NO_RUN = frozenset(("--list", "--verify", "--help", "--version", "--list-tunables",
                            "--list-diagnostics"))


def program_name(exe: str, argv: tuple[str, ...]) -> str:
    """The name of the program a process runs when it is not its executable's: what a directly
    executed dynamic loader maps (`ld.so /opt/dyn/nc -e sh`: nc), or the applet a multi-call
    binary runs (busybox and toybox run the one argv[0] names, whatever the path exec'd: /bin/sh
    with argv[0] "nc" runs nc; or argv[1] when argv[0] names the binary: `busybox sh`), cut as
    the kernel cuts a comm. "" for any other program, and for a loader or binary that runs
    nothing."""
    binary = exe.rsplit("/", 1)[-1]
    if binary.startswith(_MULTICALL_NAMES):
        applet = argv[0].rsplit("/", 1)[-1].removeprefix("-") if argv else ""  # -sh: a login
        if applet.startswith(_MULTICALL_NAMES):
            applet = argv[1].rsplit("/", 1)[-1] if len(argv) > 1 else ""
        program = "" if applet.startswith("-") else applet
    else:
        program = _loaded_program(binary, argv).rsplit("/", 1)[-1]
    return program[:COMM_LEN]


def _loaded_program(binary: str, argv: tuple[str, ...]) -> str:
    """The program a directly executed dynamic loader (`binary`, its file name) runs: its
    first non-option argument, or "" when it is not a loader or runs nothing."""
    if not binary.startswith(_LOADER_NAMES):
        return ""
    args = iter(argv[1:])
    for arg in args:
        if arg in _LOADER_NO_RUN:
            return ""
        if arg in _LOADER_VALUE_OPTIONS:
            next(args, None)
        elif not arg.startswith("--"):
            return arg
    return ""


def _readlink(path: Path) -> str:
    try:
        target = os.readlink(path)
    except OSError:
        return ""
    return target.removesuffix(" (deleted)")


def _read(path: Path, limit: int = PROC_READ_MAX) -> bytes | None:
    """At most `limit` bytes of a /proc file (None when it cannot be read: the process left)."""
    try:
        with open(path, "rb") as f:
            return f.read(limit)
    except OSError:
        return None


def _read_lines(path: Path) -> list[bytes]:
    return (_read(path) or b"").splitlines()


def _cmdline(base: Path) -> tuple[str, ...]:
    """argv from /proc/<pid>/cmdline, its first CMDLINE_MAX bytes (the last argument may be cut;
    the rest of a multi-megabyte argv would only grow the table)."""
    raw = _read(base / "cmdline", CMDLINE_MAX)
    if not raw:
        return ()
    args = raw.split(b"\0")
    if not args[-1]:
        args.pop()
    return tuple(text.decode(a, "argv") for a in args)


@dataclass(frozen=True, slots=True)
class ProcStat:
    """The fields of /proc/<pid>/stat the table uses. The comm is between the first "(" and the
    last ")": it may itself hold ")", spaces, newlines or bytes that are not UTF-8."""

    comm: str
    ppid: int
    tty: int
    start_ticks: int

    @classmethod
    def read(cls, base: Path) -> ProcStat | None:
        raw = _read(base / "stat")
        if raw is None:
            return None
        try:
            fields = raw[raw.rindex(b")") + 2 :].split()
            comm = text.decode(raw[raw.index(b"(") + 1 : raw.rindex(b")")], "comm")
            return cls(comm, int(fields[1]), int(fields[4]), int(fields[19]))
        except (ValueError, IndexError):
            return None


def _tty(base: Path) -> int:
    stat = ProcStat.read(base)
    return 0 if stat is None else stat.tty
