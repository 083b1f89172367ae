"""The process table reads /proc as bytes: whatever a process holds there, the scan goes on.

A fake /proc (proc_root) holds what a hostile container can put in the real one: a comm with a
byte that is not UTF-8, a ")" and a newline, an argv of megabytes, a cgroup path with bytes.
The real-kernel version of these cases is tests/reliability/test_hostile_inputs.py.
"""

from __future__ import annotations

import os
from pathlib import Path

from cauditd import text
from cauditd.events import ContainerInfo, ExecEvent
from cauditd.proctable import CMDLINE_MAX, ProcessTable

CONTAINER_ID = "ab" * 32
STAT_TAIL = b" S 1 42 42 34816 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 12345 0 0"


def fake_process(root: Path, pid: int, comm: bytes, argv: list[bytes] | None = None,
                 cgroup: bytes = b"0::/docker/" + CONTAINER_ID.encode()) -> None:
    base = root / str(pid)
    base.mkdir()
    (base / "stat").write_bytes(f"{pid} (".encode() + comm + b")" + STAT_TAIL + b"\n")
    (base / "cmdline").write_bytes(b"".join(a + b"\0" for a in argv or [comm]))
    (base / "status").write_bytes(b"Name:\t" + comm + b"\nUid:\t0\t7\t7\t7\nGid:\t0\t8\t8\t8\n")
    (base / "cgroup").write_bytes(cgroup + b"\n")
    os.symlink(b"/tmp/" + comm.replace(b"/", b"_"), base / "exe")
    os.symlink("/", base / "cwd")


def test_a_scan_keeps_every_process_whatever_its_bytes(tmp_path: Path) -> None:
    fake_process(tmp_path, 100, b"\xff")
    fake_process(tmp_path, 101, b"a) (b\nc \x1b[2J")
    fake_process(tmp_path, 102, b"plain", argv=[b"plain", b"x" * 3_000_000])
    fake_process(tmp_path, 103, b"cg", cgroup=b"0::/docker/" + CONTAINER_ID.encode() + b"/\xfe")
    (tmp_path / "104").mkdir()  # a process that left between listing and reading
    (tmp_path / "105").mkdir()
    (tmp_path / "105" / "stat").write_bytes(b"105 (truncated")
    before = sum(text.UNDECODABLE.values())

    table = ProcessTable(proc_root=str(tmp_path))
    table.seed()

    assert sorted(table._procs) == [100, 101, 102, 103]
    odd = table.get(100)
    assert odd is not None and odd.comm == "\udcff" and odd.exe == "/tmp/\udcff"
    assert text.printable(odd.comm) == "\\xff"
    assert odd.uid == 7 and odd.gid == 8 and odd.ppid == 1 and odd.container_id == CONTAINER_ID
    tricky = table.get(101)
    assert tricky is not None and tricky.comm == "a) (b\nc \x1b[2J" and tricky.ppid == 1
    long = table.get(102)
    assert long is not None and sum(len(a) + 1 for a in long.args) <= CMDLINE_MAX + 1
    assert table.get(103) is not None
    assert sum(text.UNDECODABLE.values()) - before >= 3  # comm, exe's argv, cgroup


def test_exec_of_a_hostile_name_completes_from_proc(tmp_path: Path) -> None:
    fake_process(tmp_path, 200, b"\xff")
    table = ProcessTable(proc_root=str(tmp_path))
    container = ContainerInfo(id=CONTAINER_ID)
    event = ExecEvent(type="execve", ts_ns=1, pid=200, tid=200, comm="\udcff",
                      exe="/tmp/\udcff", container=container)
    table.apply(event)
    assert event.process is not None and event.argv == ("\udcff",) and event.tty == 34816
