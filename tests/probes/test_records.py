"""Decoders: C record layouts to typed events, and the syscall plan user space writes."""

from __future__ import annotations

import socket
import struct

import pytest

from cauditd.events import ExecEvent, FdEvent, FileEvent, NetSyscallEvent, StdioFd, SyscallEvent
from cauditd.probes import catalog, records


def header(kind: int, pid: int = 42) -> bytes:
    return records.HEADER.pack(1000, 7, kind, pid, pid, 0, 0, 0, b"comm\0")


def syscall(name: str, args: tuple[int, ...], ret: int = 0, *, sock_info: int = 0,
            path1: bytes = b"", tail: bytes = b"", addr_len: int = 0, info: int = 0,
            fd_mode: int = 0, base: bytes = b"") -> bytes:  # fmt: skip
    nr = catalog.BY_NAME[name].nr
    a = (*args, *[0] * (6 - len(args)))
    body = struct.pack("<IIq6QQIIIIQII256s256s256s", nr, sock_info, ret, *a, 0, addr_len,
                       info, fd_mode, 0, 0, 0, 0, path1, tail, base)
    return header(records.EVENT_SYSCALL) + body


def exec_record(filename: bytes, argv: tuple[bytes, ...], *, flags: int = 0, exe: bytes = b"",
                exe_flags: int = 0, ino: int = 0, dev: int = 0,
                stdio: tuple[tuple[int, ...], ...] = ((0, 0, 0),) * 3, vpid: int = 0,
                tty: int = 0, cwd: bytes = b"", env: bytes = b"", env_len: int = 0,
                env_found: tuple[bytes, ...] = ()) -> bytes:
    packed = b"".join(a.ljust(records.ARG_LEN, b"\0") for a in argv).ljust(2048, b"\0")
    fds = b"".join(records.STDIO.pack(*fd, *(0,) * (4 - len(fd))) for fd in stdio)
    found = b"".join(var.ljust(256, b"\0") for var in env_found)
    return header(records.EVENT_EXEC) + struct.pack(
        f"<IIIIQIIIIII{3 * records.STDIO.size}s256s512s256s2048s2048s1024s", 42, len(argv),
        flags, exe_flags, ino, dev, 0, vpid, tty, env_len or len(env), len(env_found), fds,
        filename, exe, cwd, packed, env, found)


def test_exec_record_gives_argv_and_memfd_flag() -> None:
    ev = records.decode(exec_record(b"/dev/fd/3", (b"sleep", b"1"), flags=1))
    assert isinstance(ev, ExecEvent)
    assert (ev.exe, ev.argv, ev.is_exe_from_memfd, ev.comm) == (
        "/dev/fd/3",
        ("sleep", "1"),
        True,
        "comm",
    )


def test_exec_names_the_file_the_kernel_runs_and_what_stdio_is() -> None:
    pipe = (0o10600, 15, 777)
    ev = records.decode(exec_record(
        b"/../dev/shm/x", (b"x",), exe=b"/dev/shm/x\0", exe_flags=records.EXE_RESOLVED, ino=9,
        dev=50, stdio=((0o20666, 5, 1), pipe, pipe)))  # fmt: skip
    assert isinstance(ev, ExecEvent)
    assert (ev.exe, ev.filename, ev.exe_ino, ev.exe_dev) == ("/dev/shm/x", "/../dev/shm/x", 9, 50)
    assert ev.stdio == (StdioFd("file"), StdioFd("pipe", (15, 777)), StdioFd("pipe", (15, 777)))


def test_a_socket_on_stdio_is_named_by_its_family() -> None:
    inet = (0o140777, 8, 4242, records.SOCKET_KNOWN | records.AF_INET << 16 | 1)
    unix = (0o140777, 8, 4243, records.SOCKET_KNOWN | records.AF_UNIX << 16 | 1)
    ev = records.decode(exec_record(b"/bin/sh", (b"sh",), exe=b"/bin/busybox",
                                    exe_flags=records.EXE_RESOLVED, stdio=(inet, inet, unix)))
    assert isinstance(ev, ExecEvent)
    assert ev.stdio == (StdioFd("ipv4", socket=4242), StdioFd("ipv4", socket=4242),
                        StdioFd("unix", socket=4243))
    unlinked = records.decode(exec_record(
        b"/proc/self/fd/4", (b"true",), exe=b"/tmp/#1234\0",
        exe_flags=records.EXE_RESOLVED | records.EXE_UNLINKED | records.EXE_FOREIGN_MNT_NS))
    assert isinstance(unlinked, ExecEvent)
    assert unlinked.exe == "/tmp/#1234" and unlinked.is_exe_unlinked
    assert unlinked.exe_foreign_mnt_ns


def test_exec_describes_the_process_as_it_started() -> None:
    told = records.EXE_RESOLVED | records.EXE_CWD | records.EXE_ENV
    env = b"PATH=/bin\0GLIBC_TUNABLES=glibc.malloc.mxfast=1\0\xff=x\0"
    ev = records.decode(exec_record(b"/bin/sh", (b"sh",), exe_flags=told, vpid=7, tty=0x8801,
                                    cwd=b"/srv/app\0", env=env))
    assert isinstance(ev, ExecEvent) and ev.described
    assert (ev.vpid, ev.tty, ev.cwd, ev.environ) == (7, 0x8801, "/srv/app", env)
    # a cwd the kernel did not give, an environment longer than the record or not read: unknown
    for exe_flags, env_len in ((records.EXE_RESOLVED | records.EXE_ENV, 4096),
                               (records.EXE_RESOLVED, len(env))):
        ev = records.decode(exec_record(b"/bin/sh", (b"sh",), exe_flags=exe_flags, vpid=7,
                                        cwd=b"/srv/app\0", env=env, env_len=env_len))
        assert isinstance(ev, ExecEvent) and ev.described
        assert ev.cwd == "" and ev.environ is None
    assert not ev.env_too_large
    upper = records.decode(exec_record(b"/tmp/x", (b"x",), exe_flags=records.EXE_RESOLVED
                                       | records.EXE_OVERLAY | records.EXE_UPPER))
    lower = records.decode(exec_record(b"/bin/sh", (b"sh",), exe_flags=records.EXE_RESOLVED
                                       | records.EXE_OVERLAY))
    elsewhere = records.decode(exec_record(b"/bin/sh", (b"sh",), exe_flags=records.EXE_RESOLVED))
    assert isinstance(upper, ExecEvent) and isinstance(lower, ExecEvent)
    assert isinstance(elsewhere, ExecEvent)
    assert upper.exe_layer_known and upper.is_exe_upper_layer
    assert lower.exe_layer_known and not lower.is_exe_upper_layer
    assert not elsewhere.exe_layer_known
    without_layout = records.decode(exec_record(b"/bin/sh", (b"sh",)))
    assert isinstance(without_layout, ExecEvent) and not without_layout.described


def test_a_large_environment_gives_its_first_whole_variables_and_those_the_walk_found() -> None:
    """Past the record's 2 KiB: its whole variables (not the one it cut), then the variables
    process.c's walk found that are not among them; none when the walk did not get through."""
    head = b"PATH=/bin\0" + b"P=" + b"x" * 2030 + b"\0" + b"CUT=abcdef"
    env = head[:records.ENV_CAPTURE]
    told = records.EXE_RESOLVED | records.EXE_ENV
    found = (b"PATH=/elsewhere", b"GLIBC_TUNABLES=x=1", b"CUT=abcdefgh")
    ev = records.decode(exec_record(b"/bin/true", (b"true",), exe_flags=told
                                    | records.EXE_ENV_WALKED, env=env, env_len=9000,
                                    env_found=found))
    assert isinstance(ev, ExecEvent) and ev.environ is not None and not ev.env_too_large
    assert ev.environ.split(b"\0") == [b"PATH=/bin", b"P=" + b"x" * 2030,
                                       b"GLIBC_TUNABLES=x=1", b"CUT=abcdefgh", b""]
    unwalked = records.decode(exec_record(b"/bin/true", (b"true",), exe_flags=told
                                          | records.EXE_ENV_UNWALKED, env=env, env_len=9000))
    assert isinstance(unwalked, ExecEvent)
    assert unwalked.environ is None and unwalked.env_too_large  # user space reads /proc


def open_record(nr: int, info: int, ret: int, raw: bytes, path: bytes, *, dirfd: int = -100,
                flags: int = 0, i_mode: int = 0o100640) -> bytes:
    return header(records.EVENT_OPEN) + struct.pack(
        "<IIqqQQQII256s512s", nr, info, ret, dirfd, flags, 0o644, 5, 50, i_mode, raw, path)


@pytest.mark.parametrize(("info", "ret", "raw", "path", "expected"), [
    (records.OPEN_RESOLVED, 3, b"/tmp/e/shadow", b"/etc/shadow", ("/etc/shadow", "", True)),
    # the same bytes are decoded once; a prefix of the file opened is not the file
    (records.OPEN_RESOLVED, 3, b"/etc/shadow", b"/etc/shadow", ("/etc/shadow", "", True)),
    (records.OPEN_RESOLVED, 3, b"/etc/shad", b"/etc/shadow", ("/etc/shadow", "", True)),
    (records.OPEN_RESOLVED, 3, b"/etc/shadow-", b"/etc/shadow", ("/etc/shadow", "", True)),
    (records.OPEN_RESOLVED, 3, b"\xff/x", b"\xff/x", ("\udcff/x", "", True)),
    # a path as written that filled its buffer (no terminator) is never taken for the file
    (records.OPEN_RESOLVED, 3, b"a" * 256, b"a" * 257, ("a" * 257, "", True)),
    (records.OPEN_BASE, -2, b"shadow", b"/etc", ("shadow", "/etc", False)),
    (0, -13, b"/etc/./shadow", b"", ("/etc/./shadow", "", False)),
    # a resolution cut short is not a path: the path as written stands
    (records.OPEN_RESOLVED | records.OPEN_TRUNCATED, 3, b"x", b"/b/c", ("x", "", False)),
])  # fmt: skip
def test_open_record_gives_the_resolved_file_or_the_base_of_a_relative_path(
    info: int, ret: int, raw: bytes, path: bytes, expected: tuple[str, str, bool]
) -> None:
    ev = records.decode(open_record(257, info, ret, raw, path))
    assert isinstance(ev, FileEvent)
    assert (ev.path, ev.base, ev.resolved) == expected
    assert ev.raw_path == raw.decode(errors="surrogateescape")
    assert ev.type == "openat" and ev.ret == ret
    assert (ev.ino, ev.dev, ev.file_mode) == (5, 50, 0o100640)


def test_a_compat_open_is_reported_as_what_it_is() -> None:
    ev = records.decode(open_record(2, records.OPEN_RESOLVED | records.OPEN_COMPAT, 3,
                                    b"/etc/shadow", b"/etc/shadow"))
    assert isinstance(ev, FileEvent) and ev.type == "open" and ev.compat
    sig = records.decode(syscall("init_module", (0, 0, 0), info=records.SC_COMPAT))
    assert isinstance(sig, SyscallEvent) and sig.compat


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
    assert isinstance(ev, FdEvent)
    assert ev.args == {"oldfd": 3, "newfd": 2, "oldfd_is_socket": 1}


def test_fcntl_dup_says_what_it_placed_and_its_peer() -> None:
    peer = struct.pack("<H", socket.AF_INET) + struct.pack(">H", 4444) + bytes([10, 99, 0, 1])
    info = records.SOCKET_KNOWN | 2 << 16 | 1
    ev = records.decode(syscall("fcntl", (5, 0, 0), 0, sock_info=info, tail=peer, addr_len=8,
                                fd_mode=0o140777))
    assert isinstance(ev, FdEvent)
    assert (ev.fd, ev.kind, ev.addr, ev.port, ev.accepted) == (0, "ipv4", "10.99.0.1", 4444,
                                                               False)
    assert ev.args == {"fd": 5, "cmd": 0, "oldfd": 5, "newfd": 0, "oldfd_is_socket": 1}
    piped = records.decode(syscall("dup2", (3, 1), 1, fd_mode=0o10600))
    assert isinstance(piped, FdEvent) and piped.kind == "pipe"


def test_a_v4_mapped_ipv6_destination_is_its_ipv4_address() -> None:
    addr = (struct.pack("<H", socket.AF_INET6) + struct.pack(">H", 80) + b"\0" * 4
            + bytes(10) + b"\xff\xff" + bytes([169, 254, 169, 254]))
    ev = records.decode(syscall("connect", (3, 0, 28), -101, tail=addr, addr_len=28))
    assert isinstance(ev, NetSyscallEvent)
    assert (ev.family, ev.addr, ev.port) == (10, "169.254.169.254", 80)


def test_relative_paths_carry_the_directory_the_kernel_resolved() -> None:
    ev = records.decode(syscall("unlinkat", (3, 0, 0), 0, path1=b"shadow\0",
                                info=records.SC_BASE, base=b"/etc\0"))
    assert isinstance(ev, FileEvent) and (ev.path, ev.base, ev.raw_path) == ("shadow", "/etc",
                                                                           "shadow")
    cd = records.decode(syscall("fchdir", (3,), 0, info=records.SC_BASE, base=b"/etc\0"))
    assert isinstance(cd, SyscallEvent) and cd.args == {"fd": 3, "cwd": "/etc"}


def test_plan_keeps_process_syscalls_on_and_side_effects_stashed() -> None:
    plan = catalog.plan({"dup2", "procexit", "no_such_call"})
    assert plan["dup2"] == (True, True)
    assert plan["socket"] == (True, False)  # dup2's oldfd_is_socket needs socket results
    assert plan["execve"] == (True, False) and plan["chdir"] == (True, True)
    assert "openat" not in plan
    assert catalog.plan(None)["openat"] == (True, True)


def test_spec_entries_move_calls_to_the_exit_and_map_i386_numbers() -> None:
    entries = catalog.spec_entries({"openat", "init_module", "connect"}, layout=True)
    assert (entries[257]["enter"], entries[257]["exit"]) == (0, catalog.EXIT_OPEN)  # openat
    # init_module, as x86_64 175: read at exit from the registers; stashed as i386 128
    assert (entries[175]["enter"], entries[175]["exit"]) == (0, catalog.EXIT_LATE)
    assert entries[175]["compat_native"] == catalog.NO_SYSCALL  # i386 175: rt_sigprocmask
    assert entries[128]["compat_native"] == 175 and entries[128]["compat_enter"] == 1
    assert entries[128]["compat_exit"] == 0
    # stashed at entry: exec's argv, fork flags, the exit status
    assert all(entries[catalog.BY_NAME[name].nr]["enter"] == 1
               for name in ("execve", "clone", "exit_group"))
    assert entries[295]["compat_native"] == 257 and entries[295]["compat_exit"] == 1
    assert entries[catalog.I386_SOCKETCALL]["compat_native"] == catalog.SOCKETCALL_NATIVE
    assert catalog.socketcall_entries({"connect"})[3] == 42
    without = catalog.spec_entries({"openat"}, layout=False)
    assert (without[257]["enter"], without[257]["exit"]) == (1, 0)
    assert all(e["compat_native"] == catalog.NO_SYSCALL for e in without.values())


def test_comm_is_decoded_once_per_name_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from cauditd import text

    monkeypatch.setattr(records, "_COMMS", {})
    monkeypatch.setattr(records, "COMM_CACHE", 4)
    name = b"nginx".ljust(16, b"\0")
    assert records.comm_text(name) == "nginx" and {name: "nginx"} == records._COMMS
    hostile = b"\xffx".ljust(16, b"\0")  # not UTF-8: counted each time it is seen, never kept
    before = text.UNDECODABLE["record"]
    assert records.comm_text(hostile) == records.comm_text(hostile) == "\udcffx"
    assert text.UNDECODABLE["record"] == before + 2 and hostile not in records._COMMS
    for i in range(10):  # a process renaming itself in a loop: the cache starts over
        records.comm_text(f"w{i}".encode().ljust(16, b"\0"))
    assert len(records._COMMS) <= 4
