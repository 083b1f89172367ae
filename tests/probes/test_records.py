"""Decoders: C record layouts to typed events, and the syscall plan user space writes."""

from __future__ import annotations

import socket
import struct

import pytest

from cauditd.events import ExecEvent, FileEvent, NetSyscallEvent, SyscallEvent
from cauditd.probes import catalog, records


def header(kind: int, pid: int = 42) -> bytes:
    return records.HEADER.pack(1000, 7, kind, pid, pid, 0, 0, 0, b"comm\0")


def syscall(name: str, args: tuple[int, ...], ret: int = 0, *, sock_info: int = 0,
            path1: bytes = b"", tail: bytes = b"", addr_len: int = 0) -> bytes:  # fmt: skip
    nr = catalog.BY_NAME[name].nr
    a = (*args, *[0] * (6 - len(args)))
    body = struct.pack("<IIq6QQII256s256s", nr, sock_info, ret, *a, 0, addr_len, 0, path1, tail)
    return header(records.EVENT_SYSCALL) + body


def test_exec_record_gives_argv_and_memfd_flag() -> None:
    argv = b"".join(a.ljust(records.ARG_LEN, b"\0") for a in (b"sleep", b"1")).ljust(2048, b"\0")
    raw = header(records.EVENT_EXEC) + struct.pack(
        "<IIII256s2048s", 42, 2, 1, 0, b"/dev/fd/3", argv
    )
    ev = records.decode(raw)
    assert isinstance(ev, ExecEvent)
    assert (ev.exe, ev.argv, ev.is_exe_from_memfd, ev.comm) == (
        "/dev/fd/3",
        ("sleep", "1"),
        True,
        "comm",
    )


def test_openat_is_a_file_event_with_dirfd_flags_and_result() -> None:
    ev = records.decode(syscall("openat", (2**32 - 100, 0, 0o101, 0o644), 3, path1=b"etc/x\0"))
    assert isinstance(ev, FileEvent)
    assert (ev.type, ev.path, ev.dirfd, ev.flags, ev.mode, ev.ret) == (
        "openat", "etc/x", -100, 0o101, 0o644, 3)  # fmt: skip


def test_connect_decodes_the_ipv4_peer_and_the_socket_type() -> None:
    addr = struct.pack("<H", socket.AF_INET) + struct.pack(">H", 3333) + bytes([10, 99, 0, 1])
    info = records.SOCKET_KNOWN | 2 << 16 | 1
    ev = records.decode(
        syscall("connect", (3, 0, 16), -101, sock_info=info, tail=addr, addr_len=16)
    )
    assert isinstance(ev, NetSyscallEvent)
    assert (ev.fd, ev.family, ev.sock_type, ev.addr, ev.port, ev.ret) == (
        3, 2, 1, "10.99.0.1", 3333, -101)  # fmt: skip


@pytest.mark.parametrize(
    ("name", "args", "path1", "tail", "expected"),
    [
        ("ptrace", (16, 99), b"", b"", {"request": 16, "pid": 99}),
        ("setns", (3, 0x04000000), b"", b"", {"fd": 3, "nstype": 0x04000000}),
        ("unshare", (0x20000,), b"", b"", {"flags": 0x20000}),
        ("setresuid", (0, 0, 2**32 - 1), b"", b"", {"ruid": 0, "euid": 0, "suid": -1}),
        ("memfd_create", (0, 1), b"x\0", b"", {"name": "x", "flags": 1}),
        ("mount", (0, 0, 0, 1), b"/mnt\0", b"/dev/sda1".ljust(192, b"\0") + b"ext4\0",
         {"source": "/dev/sda1", "target": "/mnt", "fstype": "ext4", "flags": 1}),
        ("capset", (1, 2), b"", b"", {}),
    ],
)  # fmt: skip
def test_syscall_args_by_name(
    name: str, args: tuple[int, ...], path1: bytes, tail: bytes, expected: dict[str, object]
) -> None:
    ev = records.decode(syscall(name, args, path1=path1, tail=tail))
    assert isinstance(ev, SyscallEvent)
    assert {k: ev.args[k] for k in expected} == expected
    assert set(expected) <= set(ev.args)


def test_dup2_says_whether_oldfd_is_a_socket() -> None:
    ev = records.decode(syscall("dup2", (3, 2), 2, sock_info=records.SOCKET_KNOWN | 2 << 16 | 1))
    assert isinstance(ev, SyscallEvent)
    assert ev.args == {"oldfd": 3, "newfd": 2, "oldfd_is_socket": 1}


def test_plan_keeps_process_syscalls_on_and_side_effects_stashed() -> None:
    plan = catalog.plan({"dup2", "procexit", "no_such_call"})
    assert plan["dup2"] == (True, True)
    assert plan["socket"] == (True, False)  # dup2's oldfd_is_socket needs socket results
    assert plan["execve"] == (True, False) and plan["chdir"] == (True, True)
    assert "openat" not in plan
    assert catalog.plan(None)["openat"] == (True, True)
