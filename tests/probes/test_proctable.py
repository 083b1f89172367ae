"""The process table: seeded from the real /proc, fed fork/exec/exit/chdir, bounded."""

from __future__ import annotations

import os

from cauditd.events import (
    ContainerInfo,
    ExecEvent,
    ExitEvent,
    FileEvent,
    ForkEvent,
    NetSyscallEvent,
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
    assert dropped.is_exe_upper_layer and not shipped.is_exe_upper_layer


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
