"""Run code in a container's network namespace without the daemon leaving its own.

A network namespace is per thread: `run_in(pid, fn)` starts a short-lived thread, enters the
netns of process `pid` there with setns(2), calls `fn` and comes back before the thread ends,
so no other thread of the daemon (the event loop, the readers) ever sees another netns.
Sockets made inside (netlink, sock_diag) stay bound to that netns.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

CLONE_NEWNET = 0x40000000
TIMEOUT_S = 10.0
_libc = ctypes.CDLL(None, use_errno=True)
T = TypeVar("T")


def setns(fd: int) -> None:
    """Move the calling thread into the network namespace of `fd`."""
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextlib.contextmanager
def opened(path: str) -> Iterator[int]:
    """An fd of a namespace file (/proc/<pid>/ns/net), closed after."""
    fd = os.open(path, os.O_RDONLY)
    try:
        yield fd
    finally:
        os.close(fd)


@contextlib.contextmanager
def entered(netns_fd: int) -> Iterator[int]:
    """The calling thread in the netns of `netns_fd` for the block (which gets the fd of the
    netns it came from), and back in its own after."""
    with opened("/proc/thread-self/ns/net") as own:
        setns(netns_fd)
        try:
            yield own
        finally:
            setns(own)


def on_own_thread(fn: Callable[[], T], name: str, timeout: float = TIMEOUT_S) -> T:
    """fn() on a short-lived thread of its own; what it raises is raised here (TimeoutError
    when it takes longer than `timeout`)."""
    result: list[T] = []
    failure: list[BaseException] = []

    def main() -> None:
        try:
            result.append(fn())
        except BaseException as exc:  # handed to the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=main, name=name, daemon=True)
    thread.start()
    thread.join(timeout)
    if failure:
        raise failure[0]
    if not result:
        raise TimeoutError(f"{name} took longer than {timeout:.0f} s")
    return result[0]


def run_in(pid: int, fn: Callable[[], T], timeout: float = TIMEOUT_S) -> T:
    """fn() in the network namespace of process `pid` (see the module's docstring)."""

    def inside() -> T:
        with opened(f"/proc/{pid}/ns/net") as target, entered(target):
            return fn()

    return on_own_thread(inside, f"netns-{pid}", timeout)
