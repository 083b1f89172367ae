"""The one syscall catalog: its numbers are the kernel's (x86_64 and i386), and every syscall it
reports is an evt.type a rule can name (rules.fields.SYSCALL_TYPES is derived from it)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cauditd.events import ExecEvent, ExitEvent, FdEvent, FileEvent, ForkEvent, NetSyscallEvent
from cauditd.probes import catalog
from cauditd.rules.fields import SYSCALL_TYPES

# linux-libc-dev: present wherever the test image's static helpers compile.
HEADERS = Path("/usr/include/x86_64-linux-gnu/asm")


def numbers(header: str) -> dict[str, int]:
    text = (HEADERS / header).read_text()
    return {m[1]: int(m[2]) for m in re.finditer(r"#define __NR_(\w+) (\d+)", text)}


def test_x86_64_numbers_are_the_kernels() -> None:
    table = numbers("unistd_64.h")
    checked = [s for s in catalog.SYSCALLS if s.name in table]
    assert len(checked) >= len(catalog.SYSCALLS) - 1  # fchmodat2 is newer than these headers
    for spec in checked:
        assert spec.nr == table[spec.name], spec.name


def test_i386_numbers_are_the_kernels() -> None:
    table = numbers("unistd_32.h")
    by_number = {nr: name for name, nr in table.items()}
    for spec in catalog.SYSCALLS:
        for nr in spec.compat:
            if nr in by_number:  # i386 names carry 32/64 suffixes for the wide variants
                assert by_number[nr].removesuffix("32").removesuffix("64") == spec.name, nr
    assert table["socketcall"] == catalog.I386_SOCKETCALL
    assert table["rt_sigprocmask"] == 175  # what x86_64 numbers init_module
    assert 175 not in catalog.BY_COMPAT_NR


def test_every_reported_syscall_is_nameable_and_nothing_else() -> None:
    reported = {s.name for s in catalog.SYSCALLS} - {"exit", "exit_group"}
    assert set(SYSCALL_TYPES) == reported | {"procexit"}
    assert "fchmodat2" in SYSCALL_TYPES and "sendmmsg" in SYSCALL_TYPES


@pytest.mark.parametrize(("name", "event_class"), [
    ("execve", ExecEvent), ("clone3", ForkEvent), ("procexit", ExitEvent),
    ("fchmodat2", FileEvent), ("sendmsg", NetSyscallEvent), ("fcntl", FdEvent),
])  # fmt: skip
def test_event_classes_follow_the_catalogs_families(name: str, event_class: type) -> None:
    assert SYSCALL_TYPES[name] is event_class


def test_forks_and_exits_are_sent_at_once_only_when_a_rule_matches_one() -> None:
    assert not catalog.lifecycle_wanted({"execve", "openat", "connect"})
    assert not catalog.lifecycle_wanted(set())
    for name in ("clone", "fork", "vfork", "clone3", "procexit", "exit_group"):
        assert catalog.lifecycle_wanted({"openat", name})
    assert catalog.lifecycle_wanted(None)  # every event (--print-events, all_syscalls)
