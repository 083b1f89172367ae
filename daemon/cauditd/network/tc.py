"""Attach and detach cauditd's tc (clsact) programs on host-side veth interfaces, with pyroute2.

Our filters carry a TCA_BPF_NAME "cauditd-net-<direction>.<owner>" and a priority derived from
the owner token, so the ones a SIGKILLed daemon left behind are found and removed at the next
start, and two daemons on one host (tests, benchmarks, a daemon in a container) do not replace
or remove each other's filters.

A daemon owns its token by holding the abstract unix socket "@cauditd-tc.<owner>" for its life
(OwnerClaim). Abstract sockets live in the network namespace, as the filters do, and the kernel
releases them when the process dies however it dies; so "nobody holds it" means the owner is
gone, whichever pid namespace it ran in (a pid read from /proc says nothing about a daemon in
another pid namespace: one in an nspawn machine took the host daemon's live filters for a dead
daemon's). The token is the daemon's pid when free, else the next free one.

pyroute2's sync IPRoute runs its own event loop, so these functions must run off the asyncio
loop's thread.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

log = logging.getLogger(__name__)

FILTER_PRIO = 0xCAD  # base tc filter priority of our filters (lower runs earlier)
FILTER_HANDLE = 0xCAD
NAME_PREFIX = "cauditd-"
PARENT_INGRESS = 0xFFFFFFF2  # clsact ingress hook: packets the container sent
PARENT_EGRESS = 0xFFFFFFF3  # clsact egress hook: packets going to the container
HOOKS = {"egress": PARENT_INGRESS, "ingress": PARENT_EGRESS}  # container direction -> hook


class TcError(RuntimeError):
    """A tc attach that failed; the message names the interface."""


TOKENS = 0x8000  # owner tokens are 1..TOKENS-1, so each live owner has a priority of its own


class OwnerClaim:
    """This process's owner token, held as the abstract socket "@cauditd-tc.<token>"."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None
        self._pid = 0
        self.token = 0

    def get(self) -> int:
        """The token, claimed on first use (and again in a forked child, which owns nothing)."""
        with self._lock:
            if self._socket is None or self._pid != os.getpid():
                self._claim()
            return self.token

    def _claim(self) -> None:
        start = os.getpid() % TOKENS or 1
        for step in range(TOKENS - 1):
            token = (start - 1 + step) % (TOKENS - 1) + 1
            held = _bind(token)
            if held is not None:
                self._socket, self._pid, self.token = held, os.getpid(), token
                return
        raise TcError("no free cauditd tc owner token (32767 daemons on one host?)")


def _bind(token: int) -> socket.socket | None:
    """The socket holding `token`'s abstract name, or None when another process holds it."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    try:
        sock.bind(f"\0cauditd-tc.{token}")
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            return None
        raise
    return sock


OWNER = OwnerClaim()


def owner_token() -> int:
    """This daemon's owner token (claimed on first use, held until the process ends)."""
    return OWNER.get()


@dataclass(frozen=True, slots=True)
class TcProgram:
    """A loaded SCHED_CLS program: its fd and the container direction it observes."""

    fd: int
    direction: str  # "egress" or "ingress", as the container sees it
    owner: int = field(default_factory=owner_token)

    @property
    def filter_name(self) -> str:
        return f"{NAME_PREFIX}net-{self.direction}.{self.owner}"

    @property
    def prio(self) -> int:
        return filter_prio(self.owner)


def filter_prio(owner: int) -> int:
    return FILTER_PRIO + owner % TOKENS


def owner_of(name: str) -> int | None:
    """The owner token in one of our filter names (None: not ours; 0: an older unnamed one)."""
    if not name.startswith(NAME_PREFIX):
        return None
    _, dot, token = name.rpartition(".")
    return int(token) if dot and token.isdigit() else 0


def _owner_gone(owner: int) -> bool:
    """Whether no live daemon holds `owner` (probing its name releases it again at once)."""
    if owner <= 0 or owner >= TOKENS:
        return True
    if owner == OWNER.token and OWNER.get() == owner:
        return False
    held = _bind(owner)
    if held is None:
        return False
    held.close()
    return True


def attach(ifindex: int, programs: list[TcProgram]) -> bool:
    """Add clsact (if missing) and our filters to `ifindex`; True when we created the clsact."""
    with IPRoute() as ipr:
        created = _ensure_clsact(ipr, ifindex)
        for program in programs:
            _remove_ours(ipr, ifindex, HOOKS[program.direction], program.owner)
            try:
                ipr.tc(
                    "add-filter", "bpf", ifindex, FILTER_HANDLE, fd=program.fd,
                    name=program.filter_name, parent=HOOKS[program.direction], classid=1,
                    direct_action=True, prio=program.prio,
                )
            except NetlinkError as exc:
                raise TcError(f"ifindex {ifindex}: adding {program.filter_name}: {exc}") from exc
        return created


def detach(ifindex: int, *, remove_clsact: bool = False, owner: int | None = None) -> int:
    """Remove this daemon's filters from `ifindex` (`owner`'s; 0: those of dead daemons; gone
    interfaces are fine); the number removed.

    With remove_clsact, also delete the clsact qdisc when no other filter is left on it."""
    owner = owner_token() if owner is None else owner
    try:
        with IPRoute() as ipr:
            removed = sum(_remove_ours(ipr, ifindex, parent, owner) for parent in HOOKS.values())
            if remove_clsact and not any(_filters(ipr, ifindex, p) for p in HOOKS.values()):
                _ignore_gone(lambda: ipr.tc("del", "clsact", ifindex))
            return removed
    except NetlinkError as exc:
        if exc.code in (errno.ENODEV, errno.EINVAL, errno.ENOENT):
            return 0
        raise


def ours(ifindex: int, *, every: bool = False) -> list[str]:
    """Names of this daemon's filters on `ifindex` (every: any cauditd's), for tests."""
    mine = owner_token()
    with IPRoute() as ipr:
        found = []
        for parent in HOOKS.values():
            found += [name for name, _prio in _filters(ipr, ifindex, parent)
                      if owner_of(name) is not None and (every or owner_of(name) == mine)]
        return found


def clean_leftovers() -> list[int]:
    """Remove the filters of dead daemons (killed) from every interface; the ifindexes
    cleaned. Filters of a live daemon (another one on this host) stay."""
    cleaned = []
    with IPRoute() as ipr:
        links = [link["index"] for link in ipr.get_links()]
    for ifindex in links:
        try:
            if detach(ifindex, owner=0):
                cleaned.append(ifindex)
        except NetlinkError as exc:
            log.warning("cleaning tc filters on ifindex %d: %s", ifindex, exc)
    return cleaned


def _ensure_clsact(ipr: IPRoute, ifindex: int) -> bool:
    try:
        ipr.tc("add", "clsact", ifindex)
        return True
    except NetlinkError as exc:
        if exc.code == errno.EEXIST:
            return False
        raise TcError(f"ifindex {ifindex}: adding clsact: {exc}") from exc


def _filters(ipr: IPRoute, ifindex: int, parent: int) -> list[tuple[str, int]]:
    """(TCA_BPF_NAME or kind, priority) of the filters at `parent`; none if no clsact."""
    try:
        msgs = ipr.get_filters(index=ifindex, parent=parent)
    except NetlinkError as exc:
        if exc.code in (errno.EINVAL, errno.ENOENT, errno.ENODEV):
            return []
        raise
    out = []
    for msg in msgs:
        options = msg.get_attr("TCA_OPTIONS")
        name = (options.get_attr("TCA_BPF_NAME") if options is not None else None) or ""
        if not name and msg.get_attr("TCA_KIND") is None:
            continue  # the chain header, not a filter
        out.append((name or str(msg.get_attr("TCA_KIND")), msg["info"] >> 16))
    return out


def _remove_ours(ipr: IPRoute, ifindex: int, parent: int, owner: int) -> int:
    """Remove `owner`'s filters at `parent` (owner 0: those whose daemon is gone)."""
    prios = set()
    for name, prio in _filters(ipr, ifindex, parent):
        found = owner_of(name)
        if found is not None and (found == owner if owner else _owner_gone(found)):
            prios.add(prio)
    for prio in prios:
        try:
            ipr.tc("del-filter", "bpf", ifindex, 0, parent=parent, prio=prio)
        except NetlinkError as exc:
            if exc.code not in (errno.ENOENT, errno.ENODEV, errno.EINVAL):
                raise
    return len(prios)


def _ignore_gone(call: Callable[[], object]) -> None:
    try:
        call()
    except NetlinkError as exc:
        if exc.code not in (errno.ENOENT, errno.ENODEV, errno.EINVAL):
            raise
