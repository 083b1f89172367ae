"""The confinement systemd/cauditd.service asks of systemd, read from the unit file itself.

Syscall groups (@debug, @mount, ...) are expanded by `systemd-analyze syscall-filter`, the table
systemd itself uses, and SystemCallFilter= lines combine as systemd combines them: the first line
decides deny list ("~") or allow list, and a later line of the other kind takes its syscalls back
out. `confine_command` turns the result into a command prefix that imposes on `cauditd run` what
a process can impose on itself: the capability bounding set and no_new_privs (setpriv), the
seccomp filter with its errno and the namespace restrictions (libseccomp, tests/reliability/
confine.py).
"""

from __future__ import annotations

import errno
import functools
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import REPO

UNIT = REPO / "systemd" / "cauditd.service"
NAMESPACES = ("cgroup", "ipc", "mnt", "net", "pid", "user", "uts")


def service_settings(unit: Path = UNIT) -> list[tuple[str, str]]:
    """The [Service] section's assignments in file order (comments and blank lines dropped)."""
    settings: list[tuple[str, str]] = []
    section = ""
    for line in unit.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
        elif section == "[Service]":
            key, _, value = line.partition("=")
            settings.append((key.strip(), value.strip()))
    return settings


def values(key: str, unit: Path = UNIT) -> list[str]:
    return [value for name, value in service_settings(unit) if name == key]


@functools.cache
def syscall_group(name: str) -> frozenset[str]:
    """The syscalls of one systemd group, nested groups expanded; a plain name is itself."""
    if not name.startswith("@"):
        return frozenset([name])
    out = subprocess.run(["systemd-analyze", "syscall-filter", name], capture_output=True,
                         text=True, check=True).stdout
    members: set[str] = set()
    for line in out.splitlines()[1:]:
        item = line.strip()
        if item and not item.startswith("#"):
            members |= syscall_group(item)
    return frozenset(members)


def denied_syscalls(lines: list[str]) -> frozenset[str]:
    """The deny list that SystemCallFilter= lines make (allow lists are not supported here)."""
    denied: set[str] = set()
    deny_mode: bool | None = None
    for line in lines:
        if not line:
            denied, deny_mode = set(), None
            continue
        inverted = line.startswith("~")
        if deny_mode is None:
            deny_mode = inverted
            if not deny_mode:
                raise NotImplementedError("SystemCallFilter= allow lists are not modelled")
        names = set().union(*(syscall_group(n) for n in line.lstrip("~").split()))
        denied = denied | names if inverted else denied - names
    return frozenset(denied)


def restricted_namespaces(lines: list[str]) -> frozenset[str]:
    """Namespace types RestrictNamespaces= keeps the service from creating or joining."""
    restricted: frozenset[str] = frozenset()
    for line in lines:
        if line in ("", "no"):
            restricted = frozenset()
        elif line == "yes":
            restricted = frozenset(NAMESPACES)
        elif line.startswith("~"):
            restricted = frozenset(line[1:].split())
        else:
            restricted = frozenset(NAMESPACES) - set(line.split())
    return restricted


@dataclass(frozen=True, slots=True)
class Confinement:
    """What the unit confines the daemon with, as far as a process can impose it on itself."""

    denied_syscalls: frozenset[str]
    errno: int
    capabilities: tuple[str, ...]
    no_new_privileges: bool
    restricted_namespaces: frozenset[str]


def confinement(unit: Path = UNIT) -> Confinement:
    errno_name = (values("SystemCallErrorNumber", unit) or ["EPERM"])[-1]
    capabilities = (values("CapabilityBoundingSet", unit) or [""])[-1].split()
    return Confinement(
        denied_syscalls=denied_syscalls(values("SystemCallFilter", unit)),
        errno=getattr(errno, errno_name),
        capabilities=tuple(capabilities),
        no_new_privileges=(values("NoNewPrivileges", unit) or ["no"])[-1] == "yes",
        restricted_namespaces=restricted_namespaces(values("RestrictNamespaces", unit)),
    )


def confine_command(confined: Confinement) -> list[str]:
    """A prefix that runs a command under `confined`: setpriv for capabilities and no_new_privs,
    then tests/reliability/confine.py for the seccomp filter (needs PYTHONPATH=REPO)."""
    kept = ("+" + cap.removeprefix("CAP_").lower() for cap in confined.capabilities)
    caps = ",".join(["-all", *kept])
    return [
        "setpriv", f"--bounding-set={caps}", "--inh-caps=-all",
        *(["--no-new-privs"] if confined.no_new_privileges else []), "--",
        sys.executable, "-m", "tests.reliability.confine",
        "--errno", str(confined.errno),
        "--deny", ",".join(sorted(confined.denied_syscalls)),
        "--namespaces", ",".join(sorted(confined.restricted_namespaces)), "--",
    ]
