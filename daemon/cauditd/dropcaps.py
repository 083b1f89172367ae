"""Run a program without the daemon's capabilities: the exec alert sink's trampoline.

`python -m cauditd.dropcaps PROGRAM [ARG...]` sets no_new_privs, clears the ambient and
inheritable sets, drops from the bounding set whatever it may (all of it when it holds CAP_SETPCAP,
as a root `make run` does; the unit does not grant it), clears the permitted and effective sets,
and execs PROGRAM. With no_new_privs the kernel grants nothing at exec, so PROGRAM starts with no
capabilities even as root, and cannot gain any from a setuid or file-capability binary.
"""

from __future__ import annotations

import ctypes
import errno
import os
import sys
from typing import NoReturn

PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
LINUX_CAPABILITY_VERSION_3 = 0x20080522
EXIT_CANNOT_RUN = 127


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def _last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except (OSError, ValueError):  # /proc/sys hidden: try every bit prctl may know
        return 63


def drop_capabilities() -> None:
    """Leave this process with no capabilities it could pass on; OSError if the kernel refuses."""
    libc = ctypes.CDLL(None, use_errno=True)

    def prctl(*args: int) -> int:
        return int(libc.prctl(*(ctypes.c_ulong(a) for a in args)))

    if prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise _failed("prctl(PR_SET_NO_NEW_PRIVS)")
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)  # EINVAL before Linux 4.3: none
    for cap in range(_last_cap() + 1):
        # EPERM without CAP_SETPCAP: the bit stays, but no_new_privs keeps exec from using it.
        if prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() not in (
            errno.EPERM, errno.EINVAL,
        ):  # fmt: skip
            raise _failed(f"prctl(PR_CAPBSET_DROP, {cap})")
    header = _CapHeader(LINUX_CAPABILITY_VERSION_3, 0)
    empty = (_CapData * 2)()
    if libc.capset(ctypes.byref(header), empty) != 0:
        raise _failed("capset")


def _failed(call: str) -> OSError:
    code = ctypes.get_errno()
    return OSError(code, os.strerror(code), call)


def main(argv: list[str]) -> NoReturn:
    if not argv:
        sys.exit("usage: python -m cauditd.dropcaps PROGRAM [ARG...]")
    try:
        drop_capabilities()
    except OSError as exc:
        sys.stderr.write(f"cauditd.dropcaps: {exc.filename}: {exc.strerror}\n")
        os._exit(EXIT_CANNOT_RUN)
    try:
        os.execvp(argv[0], argv)
    except OSError as exc:
        sys.stderr.write(f"cauditd.dropcaps: cannot run {argv[0]}: {exc.strerror}\n")
        os._exit(EXIT_CANNOT_RUN)


if __name__ == "__main__":
    main(sys.argv[1:])
