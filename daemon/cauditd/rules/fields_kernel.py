"""Fields of the kernel's own view (issue 12): the file an open really opened, the executable
by identity, and shells wired to the network through pipes.

fd.nameraw, fd.ino and fd.dev are Falco's; the others are cauditd's, for detections that do not
go by a name an attacker chooses.
"""

from __future__ import annotations

from typing import Any

from cauditd.events import Event, FileEvent, SyscallEvent
from cauditd.rules.fields import SYS, FieldType, _field, _proc

S, INT, B = FieldType.STRING, FieldType.INT, FieldType.BOOL


@_field("fd.nameraw", S, (FileEvent,), "The path as the process wrote it (relative, through "
        'a symlink, "/proc/self/root/...", padded with "./"), where fd.name is the file the kernel '
        "opened.")
def _fd_nameraw(ev: Event) -> Any:
    return (ev.raw_path or ev.path) or None if isinstance(ev, FileEvent) else None


@_field("fd.ino", INT, (FileEvent,), "Inode number of the opened file (opens).", volatile=True)
def _fd_ino(ev: Event) -> Any:
    return ev.ino or None if isinstance(ev, FileEvent) else None


@_field("fd.dev", INT, (FileEvent,), "Device of the opened file's filesystem, as the kernel "
        "numbers it (major << 20 | minor).", volatile=True)
def _fd_dev(ev: Event) -> Any:
    return ev.dev or None if isinstance(ev, FileEvent) else None


@_field("proc.is_container_runtime", B, SYS, "The executable is the host's container runtime "
        "(runc, crun, containerd-shim, docker-init...) by identity: the same file (device and "
        "inode) as the runtime binary on the host, or a runtime's binary on a mount of another "
        "mount namespace than the process's, or a runtime's copy of itself. A binary merely "
        "named runc is not.", falco=False)
def _proc_runtime(ev: Event) -> Any:
    proc = _proc(ev)
    return proc.is_container_runtime if proc is not None else None


@_field("proc.is_container_init_child", B, SYS, "The parent is the container's first process "
        "(what an init wrapper such as tini or docker-init started as the entrypoint).",
        falco=False)
def _proc_init_child(ev: Event) -> Any:
    proc = _proc(ev)
    if proc is None or not isinstance(ev, SyscallEvent):
        return None
    return ev.container.pid != 0 and proc.ppid == ev.container.pid


@_field("proc.stdio_wired_to_network", FieldType.LIST, SYS, "Names of processes, this one or "
        "ones it shares pipes with, whose stdin is fed and whose stdout is read, through pipes or "
        "FIFOs (up to 3 hops), by processes that connected out or accepted a connection: a "
        "shell here is a reverse shell that dups no socket (`cat f | sh -i | nc host port > f`) "
        "or a bind shell (`nc -l -p port < f | sh > f`). Known from execs, FIFO opens, and "
        "connects and accepts of processes whose stdin and stdout are pipes or that opened a "
        "FIFO.",
        falco=False)
def _proc_wired(ev: Event) -> Any:
    proc = _proc(ev)
    return proc.stdio_wired or None if proc is not None else None


OPEN_TYPES = frozenset(("open", "openat", "openat2", "creat"))
O_CREAT, SETID_BITS = 0o100, 0o6000


@_field("evt.is_open_setid", B, (FileEvent,), "True for an open or creat that creates a file "
        "with the setuid or setgid bit in its mode: open(f, O_CREAT, 04755) makes a setuid file "
        "without any chmod.", falco=False)
def _is_open_setid(ev: Event) -> Any:
    if not isinstance(ev, FileEvent) or ev.type not in OPEN_TYPES:
        return None
    creates = ev.type == "creat" or bool(ev.flags & O_CREAT)
    return creates and bool(ev.mode & SETID_BITS)
