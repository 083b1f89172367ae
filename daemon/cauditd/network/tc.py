"""Attach and detach cauditd's tc (clsact) programs on host-side veth interfaces, with pyroute2.

Our filters carry a TCA_BPF_NAME "cauditd-net-<direction>.<pid>" and a priority derived from
the daemon's pid, so the ones a SIGKILLed daemon left behind (its pid gone) are found and
removed at the next start, and two daemons on one host (tests, benchmarks) do not replace or
remove each other's filters. pyroute2's sync
IPRoute runs its own event loop, so these functions must run off the asyncio loop's thread.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

log = logging.getLogger(__name__)

FILTER_PRIO = 0xCAD  # base tc filter priority of our filters (lower runs earlier)
FILTER_HANDLE = 0xCAD
NAME_PREFIX = "cauditd-"
PARENT_INGRESS = 0xFFFFFFF2  # clsact ingress hook: packets the container sent
PARENT_EGRESS = 0xFFFFFFF3  # clsact egress hook: packets going to the container
HOOKS = {"egress": PARENT_INGRESS, "ingress": PARENT_EGRESS}  # container direction -> hook


@dataclass(frozen=True, slots=True)
class TcProgram:
    """A loaded SCHED_CLS program: its fd and the container direction it observes."""

    fd: int
    direction: str  # "egress" or "ingress", as the container sees it
    owner: int = os.getpid()

    @property
    def filter_name(self) -> str:
        return f"{NAME_PREFIX}net-{self.direction}.{self.owner}"

    @property
    def prio(self) -> int:
        return filter_prio(self.owner)


def filter_prio(owner: int) -> int:
    return FILTER_PRIO + owner % 0x8000


def owner_of(name: str) -> int | None:
    """The daemon pid in one of our filter names (None: not ours, or an older unnamed one)."""
    if not name.startswith(NAME_PREFIX):
        return None
    _, dot, pid = name.rpartition(".")
    return int(pid) if dot and pid.isdigit() else 0


def _owner_gone(owner: int) -> bool:
    return owner == 0 or not os.path.isdir(f"/proc/{owner}")


class TcError(RuntimeError):
    """A tc attach that failed; the message names the interface."""


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
    """Remove this process's filters (`owner`'s; None: those of dead daemons) from `ifindex`
    (gone interfaces are fine); the number removed.

    With remove_clsact, also delete the clsact qdisc when no other filter is left on it."""
    owner = os.getpid() if owner is None else owner
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
    """Names of this process's filters on `ifindex` (every: any cauditd's), for tests."""
    mine = os.getpid()
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
