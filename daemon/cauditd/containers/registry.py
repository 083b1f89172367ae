"""The container registry: cgroup id to ContainerInfo, kept in step with the probes' cgroup map.

Entries go when their cgroup does: a cgroup directory gone for CGROUP_GRACE_S (late events of
its last processes still resolve meanwhile) is forgotten here and in the kernel's map, and a
container with no cgroup left is removed. This covers every runtime, and events missed while
a runtime's event stream was down.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

from cauditd import metrics
from cauditd.config import ProbesConfig
from cauditd.containers.cgroups import CgroupTree, container_from_path, find_cgroup2_root
from cauditd.containers.containerd import ContainerdClient, TaskEvent
from cauditd.containers.crio import CrioClient
from cauditd.containers.docker import DockerClient, announced, container_info, upper_dir
from cauditd.events import HOST_ID, ContainerInfo
from cauditd.tasks import create_task

log = logging.getLogger(__name__)

CGROUP_GRACE_S = 10.0  # a gone cgroup still resolves this long (its last events in flight)
GC_INTERVAL_S = 5.0
SWEEP_EVERY = 6  # collections between sweeps of the kernel's map (30 s)
# the longest a gone cgroup stays known, here or in the kernel's map
FORGOTTEN_WITHIN_S = GC_INTERVAL_S * (max(CGROUP_GRACE_S / GC_INTERVAL_S, SWEEP_EVERY) + 1)
MAX_ANNOUNCED = 1024  # containers dockerd announced (create/start) that we may not have seen yet


class CgroupFilter(Protocol):
    """The in-kernel cgroup filter the registry keeps up to date (SyscallProbes)."""

    def track(self, cgroup_id: int) -> None: ...
    def ignore(self, cgroup_id: int) -> None: ...
    def forget(self, cgroup_id: int) -> None: ...
    def add_watch_root(self, cgroup_id: int) -> None: ...
    def cgroup_ids(self) -> list[int]: ...


class ContainerRegistry:
    """Resolves cgroup ids to containers; fills in runtime metadata in the background.

    `resolve` is on the per-event path: a dict lookup for a known cgroup. A new cgroup costs a
    rescan of the cgroup tree once, then it is tracked or ignored in the kernel too.
    """

    def __init__(self, config: ProbesConfig, filters: list[CgroupFilter]) -> None:
        self._config = config
        self._filters = filters
        self.tree = CgroupTree(find_cgroup2_root(config.cgroup_root))
        self.docker = DockerClient(config.docker_socket)
        self.containerd = ContainerdClient(config.containerd_socket)
        self.crio = CrioClient(config.crio_socket)
        self._namespace_hints: dict[str, str] = {}  # container id -> containerd namespace
        self._watch_roots: set[int] = set()
        self._containerd_task: asyncio.Task[None] | None = None
        self._by_cgroup: dict[int, ContainerInfo | None] = {}
        self._by_id: dict[str, ContainerInfo] = {}
        self._metadata_pending: set[str] = set()
        self._upper_dirs: dict[str, str] = {}
        self._paths: dict[int, str] = {}  # the path of every cgroup in _by_cgroup
        self._gone_since: dict[int, float] = {}  # cgroup id -> when it was first seen gone
        self._announced: OrderedDict[str, ContainerInfo] = OrderedDict()
        self._docker_since_ns = 0  # the last Docker event seen: a new stream resumes there
        self._docker_up: bool | None = None  # None: not tried yet
        self.on_metadata: list[Callable[[str], None]] = []
        self._events_task: asyncio.Task[None] | None = None
        self._gc_task: asyncio.Task[None] | None = None
        self._fetches: set[asyncio.Task[None]] = set()  # metadata lookups under way
        self._collections = 0
        self.counters = dict.fromkeys(
            ("cgroups_forgotten", "containers_removed", "kernel_verdicts_swept"), 0)

    def add_filter(self, cgroup_filter: CgroupFilter) -> None:
        """Keep `cgroup_filter` (the syscall probes) in step too, from now on."""
        self._filters.append(cgroup_filter)

    async def start(self) -> None:
        # ctr and nerdctl (cgroupfs) put containers in /<containerd namespace>/<id>.
        self._add_watch_roots(self.tree.watch_roots(await self.containerd.namespaces()))
        for cgroup_id, (path, cgroup) in self.tree.containers().items():
            self._add(cgroup_id, path, cgroup.container_id, cgroup.runtime, cgroup.namespace)
        await asyncio.gather(*(self._fetch_metadata(cid) for cid in list(self._by_id)))
        self._events_task = create_task(self._follow_docker(), name="docker-events")
        if self.containerd.available():
            self._containerd_task = create_task(self._follow_containerd(), name="containerd-events")
        self._gc_task = create_task(self._collect_garbage_loop(), name="registry-gc")

    async def stop(self) -> None:
        for task in (self._events_task, self._containerd_task, self._gc_task, *self._fetches):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await self.docker.close()
        await self.containerd.close()
        await self.crio.close()

    def _add_watch_roots(self, roots: dict[int, str]) -> None:
        for cgroup_id, path in roots.items():
            if cgroup_id in self._watch_roots:
                continue
            log.debug("watch root %s (cgroup id %d)", path, cgroup_id)
            self._watch_roots.add(cgroup_id)
            for f in self._filters:
                f.add_watch_root(cgroup_id)

    def resolve(self, cgroup_id: int) -> ContainerInfo | None:
        """The container of a cgroup, HOST (when host tracking is on), or None to drop."""
        try:
            return self._by_cgroup[cgroup_id]
        except KeyError:
            return self._classify(cgroup_id)

    def containers(self) -> list[ContainerInfo]:
        return list(self._by_id.values())

    def get(self, container_id: str) -> ContainerInfo | None:
        return self._by_id.get(container_id)

    @property
    def watch_root_ids(self) -> frozenset[int]:
        """cgroup ids of the parents whose new children the kernel lets through unclassified."""
        return frozenset(self._watch_roots)

    def metadata_pending(self, container_id: str) -> bool:
        """True while the runtime has not answered for this container yet."""
        return container_id in self._metadata_pending

    def upper_dir(self, container_id: str) -> str | None:
        """The container's overlay upper dir on the host, when the runtime said."""
        return self._upper_dirs.get(container_id)

    def _classify(self, cgroup_id: int) -> ContainerInfo | None:
        path = self.tree.path(cgroup_id)
        if path is None:
            return None  # vanished before we looked: nothing to remember it by
        cgroup = container_from_path(path)
        if cgroup is not None:
            return self._add(cgroup_id, path, cgroup.container_id, cgroup.runtime,
                             cgroup.namespace)
        self._paths[cgroup_id] = path
        if self._config.track_host:
            info = ContainerInfo(id=HOST_ID, name="host", runtime="host", cgroup_id=cgroup_id)
            self._by_cgroup[cgroup_id] = info
            return info
        self._by_cgroup[cgroup_id] = None
        for f in self._filters:
            f.ignore(cgroup_id)
        return None

    def _add(
        self, cgroup_id: int, path: str, container_id: str, runtime: str, namespace: str = ""
    ) -> ContainerInfo:
        info = self._by_id.get(container_id)
        if info is None:
            info = ContainerInfo(id=container_id, runtime=runtime, cgroup_id=cgroup_id)
            if (seen := self._announced.get(container_id)) is not None:
                self._apply_announced(info, seen)
            self._by_id[container_id] = info
            self._namespace_hints[container_id] = namespace
            self._schedule_metadata(container_id)
        self._by_cgroup[cgroup_id] = info
        self._paths[cgroup_id] = path
        for f in self._filters:
            f.track(cgroup_id)
        metrics.TRACKED_CONTAINERS.set(len(self._by_id))
        return info

    def _remove(self, container_id: str) -> None:
        info = self._by_id.pop(container_id, None)
        self._upper_dirs.pop(container_id, None)
        self._namespace_hints.pop(container_id, None)
        self._announced.pop(container_id, None)
        if info is None:
            return
        for cgroup_id in [c for c, i in self._by_cgroup.items() if i is info]:
            self._forget_cgroup(cgroup_id)
        self.counters["containers_removed"] += 1
        metrics.TRACKED_CONTAINERS.set(len(self._by_id))

    def _forget_cgroup(self, cgroup_id: int) -> None:
        self._by_cgroup.pop(cgroup_id, None)
        self._paths.pop(cgroup_id, None)
        self._gone_since.pop(cgroup_id, None)
        self.tree.forget(cgroup_id)
        for f in self._filters:
            f.forget(cgroup_id)
        self.counters["cgroups_forgotten"] += 1

    # --- forgetting what is gone ------------------------------------------------------------

    async def _collect_garbage_loop(self) -> None:
        while True:
            await asyncio.sleep(GC_INTERVAL_S)
            try:
                await self.collect_garbage()
            except Exception:
                log.exception("registry: forgetting gone cgroups failed; retrying")

    async def collect_garbage(self, now: float | None = None) -> None:
        """Forget cgroups gone for CGROUP_GRACE_S (here and in the kernel), then the containers
        left without a cgroup."""
        gone = set(await asyncio.to_thread(self.tree.gone, list(self._paths.items())))
        now = time.monotonic() if now is None else now
        for cgroup_id in gone:
            self._gone_since.setdefault(cgroup_id, now)
        for cgroup_id, since in list(self._gone_since.items()):
            if cgroup_id not in gone:
                del self._gone_since[cgroup_id]  # forgotten meanwhile
            elif now - since >= CGROUP_GRACE_S:
                self._forget_cgroup(cgroup_id)
        held = {info.id for info in self._by_cgroup.values() if info is not None}
        for container_id in [c for c in self._by_id if c not in held]:
            log.debug("registry: container %s is gone", container_id[:12])
            self._remove(container_id)
        self._collections += 1
        if self._collections % SWEEP_EVERY == 0:
            await self.sweep_kernel()

    async def sweep_kernel(self) -> int:
        """Delete the kernel's own verdicts about cgroups that are gone: the probes mark a host
        cgroup IGNORED on first sight, without the registry, so on a host whose cgroups come
        and go (transient units, sessions) they would fill the map, and then tracking a new
        container would fail. Returns how many went."""
        def read() -> tuple[set[int], set[int]]:
            in_kernel = {c for f in self._filters for c in f.cgroup_ids()}
            return in_kernel, self.tree.live_ids()

        in_kernel, live = await asyncio.to_thread(read)
        stale = [c for c in in_kernel if c not in live and c not in self._by_cgroup]
        for cgroup_id in stale:
            for f in self._filters:
                f.forget(cgroup_id)
        self.counters["kernel_verdicts_swept"] += len(stale)
        return len(stale)

    def table_stats(self) -> dict[str, int | float]:
        """Sizes of the registry's tables, for /v1/stats."""
        return {"containers": len(self._by_id), "cgroups_known": len(self._by_cgroup),
                "cgroups_gone": len(self._gone_since), "forgotten_within_s": FORGOTTEN_WITHIN_S,
                **self.counters}

    def _schedule_metadata(self, container_id: str) -> None:
        if container_id in self._metadata_pending:
            return
        self._metadata_pending.add(container_id)
        try:
            task = create_task(self._fetch_metadata(container_id),
                               name=f"inspect-{container_id[:12]}")
        except RuntimeError:  # no running loop (tests calling resolve directly)
            self._metadata_pending.discard(container_id)
            return
        self._fetches.add(task)
        task.add_done_callback(self._fetches.discard)

    async def _fetch_metadata(self, container_id: str) -> None:
        """Ask the runtimes in turn: the one the cgroup path names first, then Docker,
        containerd (in the namespace the path suggests, then k8s.io, default) and CRI-O."""
        try:
            info = self._by_id.get(container_id)
            runtime = info.runtime if info is not None else ""
            docker, containerd, crio = self._from_docker, self._from_containerd, self._from_crio
            lookups = {"containerd": (containerd, docker, crio), "crio": (crio, docker, containerd)}
            for lookup in lookups.get(runtime, (docker, containerd, crio)):
                if await lookup(container_id):
                    break
        finally:
            self._metadata_pending.discard(container_id)
            for callback in self.on_metadata:
                callback(container_id)

    async def _from_docker(self, container_id: str) -> bool:
        doc = await self.docker.inspect_doc(container_id)
        info = self._by_id.get(container_id)
        if doc is not None and info is not None:
            self._apply_metadata(info, doc)
        return doc is not None

    async def _from_containerd(self, container_id: str) -> bool:
        hint = self._namespace_hints.get(container_id, "")
        namespaces = dict.fromkeys(n for n in (hint, "k8s.io", "default") if n)
        found = await self.containerd.container(container_id, namespaces)
        if found is not None and (info := self._by_id.get(container_id)) is not None:
            self._apply_info(info, found.info())
        return found is not None

    async def _from_crio(self, container_id: str) -> bool:
        found = await self.crio.inspect(container_id)
        if found is not None and (info := self._by_id.get(container_id)) is not None:
            self._apply_info(info, found)
        return found is not None

    def _apply_info(self, info: ContainerInfo, found: ContainerInfo) -> None:
        info.name, info.image, info.image_id = found.name, found.image, found.image_id
        info.labels, info.privileged = found.labels, found.privileged
        info.mounts = found.mounts or info.mounts
        info.pid = found.pid or info.pid
        info.runtime = found.runtime
        info.started_ns = found.started_ns or info.started_ns or time.time_ns()

    def _apply_metadata(self, info: ContainerInfo, doc: dict[str, Any]) -> None:
        found = container_info(doc)
        if upper := upper_dir(doc):
            self._upper_dirs[info.id] = upper
        info.name, info.image, info.image_id = found.name, found.image, found.image_id
        info.labels, info.privileged = found.labels, found.privileged
        info.mounts = found.mounts or info.mounts
        info.pid = found.pid or info.pid  # 0 once exited: keep what the process table learnt
        info.runtime = "docker"
        info.started_ns = found.started_ns or info.started_ns or time.time_ns()

    async def _follow_docker(self) -> None:
        """Follow dockerd's events; when the stream breaks (dockerd restarted, or not up yet)
        reconnect every 2 s and resume after the last event seen."""
        while True:
            try:
                async for event in self.docker.events(self._docker_since_ns,
                                                      on_open=self._docker_connected):
                    self._docker_since_ns = int(event.get("timeNano") or 0) or \
                        self._docker_since_ns
                    try:
                        await self._on_docker_event(event)
                    except Exception:  # one event, not the stream (it would be replayed)
                        log.exception("registry: a docker %s event failed", event.get("Action"))
                reason = "closed by dockerd"
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                reason = str(exc) or type(exc).__name__
            if self._docker_up is not False:
                log.info("docker event stream: %s; reconnecting every 2 s", reason)
            self._docker_up = False
            await asyncio.sleep(2)

    def _docker_connected(self) -> None:
        """The event stream is (back) up: ask again about the containers no runtime answered
        for (dockerd was down when they appeared, or restarting)."""
        missing = [c.id for c in self._by_id.values() if not c.image]
        if self._docker_up is False:
            log.info("docker event stream open again; fetching metadata of %d containers",
                     len(missing))
        self._docker_up = True
        for container_id in missing:
            self._schedule_metadata(container_id)

    async def _on_docker_event(self, event: dict[str, Any]) -> None:
        container_id = str(event.get("id") or (event.get("Actor") or {}).get("ID", ""))
        action = event.get("Action") or event.get("status")
        if action in ("create", "start") and (seen := announced(event)) is not None:
            self._remember_announced(seen)
        if action == "start":
            for cgroup_id, (path, cgroup) in self.tree.containers().items():
                if cgroup.container_id == container_id:
                    self._add(cgroup_id, path, container_id, cgroup.runtime)
            await self._fetch_metadata(container_id)
        elif action == "destroy":
            self._announced.pop(container_id, None)  # its cgroups go, then it (collect_garbage)

    def _remember_announced(self, seen: ContainerInfo) -> None:
        """Name, image and labels from dockerd's event: a container gone before an inspect
        could answer (`docker run --rm` of a short command) is still named by them."""
        self._announced[seen.id] = seen
        self._announced.move_to_end(seen.id)
        while len(self._announced) > MAX_ANNOUNCED:
            self._announced.popitem(last=False)
        info = self._by_id.get(seen.id)
        if info is not None and not info.name:
            self._apply_announced(info, seen)

    @staticmethod
    def _apply_announced(info: ContainerInfo, seen: ContainerInfo) -> None:
        info.name, info.image, info.labels = seen.name, seen.image, seen.labels

    async def _follow_containerd(self) -> None:
        while True:
            try:
                async for event in self.containerd.events():
                    await self._on_containerd_event(event)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("containerd event stream: %s; retrying", exc)
            await asyncio.sleep(2)

    async def _on_containerd_event(self, event: TaskEvent) -> None:
        """Track a task's cgroup as soon as containerd created it (its parent, a new namespace's
        cgroup, becomes a watch root); Docker's own namespace is left to Docker's events."""
        if event.namespace == "moby":
            return
        if event.topic in ("/tasks/create", "/tasks/start"):
            self._add_watch_roots(self.tree.watch_roots([event.namespace]))
            for cgroup_id, (path, cgroup) in self.tree.containers().items():
                if cgroup.container_id == event.container_id:
                    self._add(cgroup_id, path, event.container_id, cgroup.runtime,
                              event.namespace)
            if event.container_id in self._by_id:
                self._namespace_hints[event.container_id] = event.namespace
                await self._fetch_metadata(event.container_id)
        # /containers/delete: its cgroups are gone by then; collect_garbage removes it
