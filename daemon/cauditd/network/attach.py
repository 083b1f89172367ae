"""Which host-side veths the network programs are attached to, for which container: attach and
detach (netlink, in worker threads) and the ifindex -> container map events are attributed by.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from cauditd.events import ContainerInfo
from cauditd.network import tc, veth

log = logging.getLogger(__name__)
T = TypeVar("T")


def off_loop(fn: Callable[[], T]) -> T:
    """Run blocking netlink work (pyroute2's sync API runs its own loop) off any event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return fn()
    result: list[Any] = []

    def run() -> None:
        try:
            result.append((True, fn()))
        except BaseException as exc:
            result.append((False, exc))

    thread = threading.Thread(target=run, name="netlink")
    thread.start()
    thread.join()
    ok, value = result[0]
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


class Attachments:
    """Container id -> (pid, host ifindexes) we attached to, and ifindex -> container.

    `attach` and `detach` block (netlink) and may run in worker threads; the maps are guarded
    by one lock. A detached interface stays attributed to its container until `end_closing`
    (the next flow scrape), so the flows and records still in flight keep their container.
    `changes` lists (container id, pid; 0 when gone) for the loop to follow.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()  # the maps below
        self._netlink = threading.Lock()  # an attach under way, against close()
        self._closed = False
        self._attached: dict[str, tuple[int, list[int]]] = {}
        self._by_ifindex: dict[int, ContainerInfo] = {}
        self._closing: set[int] = set()  # detached ifindexes whose flows end at the next scrape
        self._clsact_ours: set[int] = set()
        self._skip: dict[str, int] = {}  # container id -> pid not to retry (host net, failure)
        self._changes: list[tuple[str, int]] = []
        self.counters: dict[str, int] = dict.fromkeys(
            ("attach_errors", "host_network", "veth_foreign_peers"), 0)

    def attach(self, container: ContainerInfo, programs: list[tc.TcProgram]) -> list[int]:
        """Attach `programs` to the host-side veths of `container`; the ifindexes (none: host
        network, it failed and will not be retried for this pid, or `close` was called)."""
        with self._netlink:
            if self._closed:
                return []
            return self._attach(container, programs)

    def close(self) -> None:
        """Refuse attaching from now on; returns once an attach under way has finished (a
        thread cannot be cancelled), so what `attached()` lists next is complete."""
        with self._netlink:
            self._closed = True

    def _attach(self, container: ContainerInfo, programs: list[tc.TcProgram]) -> list[int]:
        pid = container.pid
        try:
            if veth.same_netns_as_host(pid):
                self.counters["host_network"] += 1
                self._skip[container.id] = pid
                return []
            net = veth.container_net(pid)
            ifindexes = net.host_ifindexes
            if net.foreign_peers:
                self.counters["veth_foreign_peers"] += net.foreign_peers
                log.warning("network: container %s has %d veth ends whose peer is not its "
                            "host-side veth (made inside its netns?): not attached to them",
                            container.short_id, net.foreign_peers)
            for ifindex in ifindexes:
                if tc.attach(ifindex, programs):
                    self._clsact_ours.add(ifindex)
        except (veth.VethError, tc.TcError, OSError) as exc:
            self.counters["attach_errors"] += 1
            self._skip[container.id] = pid
            log.warning("network: cannot attach to container %s: %s", container.short_id, exc)
            return []
        with self._lock:
            self._attached[container.id] = (pid, ifindexes)
            for ifindex in ifindexes:
                self._by_ifindex[ifindex] = container
                self._closing.discard(ifindex)
            self._changes.append((container.id, pid))
        log.debug("network: container %s on ifindexes %s", container.short_id, ifindexes)
        return ifindexes

    def detach(self, container_id: str) -> None:
        """Remove our filters from the container's veths; its flows end at the next scrape."""
        with self._lock:
            _pid, ifindexes = self._attached.pop(container_id, (0, []))
            self._closing.update(ifindexes)
            self._changes.append((container_id, 0))
        self._skip.pop(container_id, None)
        for ifindex in ifindexes:
            tc.detach(ifindex, remove_clsact=ifindex in self._clsact_ours)
            self._clsact_ours.discard(ifindex)

    def skipped(self, container_id: str, pid: int) -> bool:
        """True when attaching to this container's `pid` failed or does not apply."""
        return self._skip.get(container_id) == pid

    def keep_skipped(self, container_ids: set[str]) -> None:
        """Forget the skipped containers that are gone (never attached, never detached)."""
        for container_id in [c for c in self._skip if c not in container_ids]:
            del self._skip[container_id]

    @property
    def skipped_count(self) -> int:
        return len(self._skip)

    def attached(self) -> dict[str, tuple[int, list[int]]]:
        """Container id -> (pid, host ifindexes)."""
        with self._lock:
            return {cid: (pid, list(ifs)) for cid, (pid, ifs) in self._attached.items()}

    def container_of(self, ifindex: int) -> ContainerInfo | None:
        return self._by_ifindex.get(ifindex)

    @property
    def closing(self) -> set[int]:
        with self._lock:
            return set(self._closing)

    def end_closing(self, ifindexes: set[int]) -> list[str]:
        """The scrape ended the flows of these detached interfaces: stop attributing them.
        Returns the ids of the containers no longer attached anywhere."""
        gone = []
        with self._lock:
            for ifindex in ifindexes:
                if ifindex not in self._closing:
                    continue
                self._closing.discard(ifindex)
                container = self._by_ifindex.pop(ifindex, None)
                if container is not None and container.id not in self._attached:
                    gone.append(container.id)
        return gone

    def take_changes(self) -> list[tuple[str, int]]:
        with self._lock:
            changes, self._changes = self._changes, []
        return changes

    def interfaces(self) -> tuple[int, int]:
        """(containers attached, interfaces attached)."""
        with self._lock:
            return len(self._attached), sum(len(ifs) for _pid, ifs in self._attached.values())
