"""Load a seccomp filter like systemd's for a unit, then exec a command under it.

`python -m tests.reliability.confine --errno N --deny a,b,c --namespaces net,user -- CMD...`:
every denied syscall fails with errno N (SystemCallFilter= with SystemCallErrorNumber=);
creating or joining a restricted namespace type fails with EPERM, as systemd's
RestrictNamespaces= filter does (unshare/clone by flag, setns by type or type 0, clone3 ENOSYS so
the C library falls back to clone, whose flags a filter can see). Other architectures' syscalls
kill the process (SystemCallArchitectures=native).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import sys

import seccomp

CLONE_FLAGS = {
    "mnt": 0x00020000, "cgroup": 0x02000000, "uts": 0x04000000, "ipc": 0x08000000,
    "user": 0x10000000, "pid": 0x20000000, "net": 0x40000000,
}


def build_filter(deny: list[str], errno_value: int, namespaces: list[str]) -> seccomp.SyscallFilter:
    sandbox = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    for name in deny:
        # ValueError/RuntimeError: not a syscall of this architecture (s390_runtime_instr, ...)
        with contextlib.suppress(ValueError, RuntimeError):
            sandbox.add_rule(seccomp.ERRNO(errno_value), name)
    if namespaces:
        refuse = seccomp.ERRNO(errno.EPERM)
        for name in namespaces:
            flag = CLONE_FLAGS[name]
            for syscall in ("unshare", "clone"):
                sandbox.add_rule(refuse, syscall, seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
            sandbox.add_rule(refuse, "setns", seccomp.Arg(1, seccomp.EQ, flag))
        sandbox.add_rule(refuse, "setns", seccomp.Arg(1, seccomp.EQ, 0))
        sandbox.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    return sandbox


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--errno", type=int, required=True)
    parser.add_argument("--deny", default="")
    parser.add_argument("--namespaces", default="")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    deny = [name for name in args.deny.split(",") if name]
    namespaces = [name for name in args.namespaces.split(",") if name]
    build_filter(deny, args.errno, namespaces).load()
    os.execvp(command[0], command)


if __name__ == "__main__":
    sys.exit(main())
