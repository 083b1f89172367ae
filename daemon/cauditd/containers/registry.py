"""The container registry: cgroup id to ContainerInfo, kept in step with the probes' cgroup map."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from cauditd import metrics
from cauditd.config import ProbesConfig
from cauditd.containers.cgroups import CgroupTree, container_from_path, find_cgroup2_root
from cauditd.containers.containerd import ContainerdClient, TaskEvent
from cauditd.containers.crio import CrioClient
from cauditd.containers.docker import DockerClient, container_info, upper_dir
from cauditd.events import HOST_ID, ContainerInfo
from cauditd.tasks import create_task

log = logging.getLogger(__name__)


class CgroupFilter(Protocol):
    """The in-kernel cgroup filter the registry keeps up to date (SyscallProbes)."""

    def track(self, cgroup_id: int) -> None: ...
    def ignore(self, cgroup_id: int) -> None: ...
    def forget(self, cgroup_id: int) -> None: ...
    def add_watch_root(self, cgroup_id: int) -> None: ...


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
        self.on_metadata: list[Callable[[str], None]] = []
        self._events_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        # ctr and nerdctl (cgroupfs) put containers in /<containerd namespace>/<id>.
        self._add_watch_roots(self.tree.watch_roots(await self.containerd.namespaces()))
        for cgroup_id, (_path, cgroup) in self.tree.containers().items():
            self._add(cgroup_id, cgroup.container_id, cgroup.runtime, cgroup.namespace)
        await asyncio.gather(*(self._fetch_metadata(cid) for cid in list(self._by_id)))
        self._events_task = create_task(self._follow_docker(), name="docker-events")
        if self.containerd.available():
            self._containerd_task = create_task(self._follow_containerd(), name="containerd-events")

    async def stop(self) -> None:
        for task in (self._events_task, self._containerd_task):
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
        cgroup = container_from_path(path) if path is not None else None
        if cgroup is not None:
            return self._add(cgroup_id, cgroup.container_id, cgroup.runtime, cgroup.namespace)
        if self._config.track_host:
            info = ContainerInfo(id=HOST_ID, name="host", runtime="host", cgroup_id=cgroup_id)
            self._by_cgroup[cgroup_id] = info
            return info
        if path is not None:  # a cgroup that vanished before we looked may be a container's
            self._by_cgroup[cgroup_id] = None
            for f in self._filters:
                f.ignore(cgroup_id)
        return None

    def _add(
        self, cgroup_id: int, container_id: str, runtime: str, namespace: str = ""
    ) -> ContainerInfo:
        info = self._by_id.get(container_id)
        if info is None:
            info = ContainerInfo(id=container_id, runtime=runtime, cgroup_id=cgroup_id)
            self._by_id[container_id] = info
            self._namespace_hints[container_id] = namespace
            self._schedule_metadata(container_id)
        self._by_cgroup[cgroup_id] = info
        for f in self._filters:
            f.track(cgroup_id)
        metrics.TRACKED_CONTAINERS.set(len(self._by_id))
        return info

    def _remove(self, container_id: str) -> None:
        info = self._by_id.pop(container_id, None)
        self._upper_dirs.pop(container_id, None)
        self._namespace_hints.pop(container_id, None)
        if info is None:
            return
        for cgroup_id in [c for c, i in self._by_cgroup.items() if i is info]:
            del self._by_cgroup[cgroup_id]
            self.tree.forget(cgroup_id)
            for f in self._filters:
                f.forget(cgroup_id)
        metrics.TRACKED_CONTAINERS.set(len(self._by_id))

    def _schedule_metadata(self, container_id: str) -> None:
        if container_id in self._metadata_pending:
            return
        self._metadata_pending.add(container_id)
        try:
            create_task(self._fetch_metadata(container_id), name=f"inspect-{container_id[:12]}")
        except RuntimeError:  # no running loop (tests calling resolve directly)
            self._metadata_pending.discard(container_id)

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
        while True:
            try:
                async for event in self.docker.events():
                    await self._on_docker_event(event)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("docker event stream: %s; retrying", exc)
            await asyncio.sleep(2)

    async def _on_docker_event(self, event: dict[str, Any]) -> None:
        container_id = str(event.get("id") or (event.get("Actor") or {}).get("ID", ""))
        action = event.get("Action") or event.get("status")
        if action == "start":
            for cgroup_id, (_path, cgroup) in self.tree.containers().items():
                if cgroup.container_id == container_id:
                    self._add(cgroup_id, container_id, cgroup.runtime)
            await self._fetch_metadata(container_id)
        elif action == "destroy":
            self._remove(container_id)

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
            for cgroup_id, (_path, cgroup) in self.tree.containers().items():
                if cgroup.container_id == event.container_id:
                    self._add(cgroup_id, event.container_id, cgroup.runtime, event.namespace)
            if event.container_id in self._by_id:
                self._namespace_hints[event.container_id] = event.namespace
                await self._fetch_metadata(event.container_id)
        elif event.topic == "/containers/delete":
            self._remove(event.container_id)
