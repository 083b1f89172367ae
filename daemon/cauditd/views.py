"""Read-only views of the running daemon that the API serves (containers, stats)."""

from __future__ import annotations

from typing import Any

from cauditd.containers.registry import ContainerRegistry
from cauditd.events import HOST_ID, ContainerInfo
from cauditd.proctable import ProcessTable


def container_doc(info: ContainerInfo) -> dict[str, Any]:
    """A container as the API shows it."""
    return {
        "id": info.id,
        "short_id": info.short_id,
        "name": info.name,
        "image": info.image,
        "image_id": info.image_id,
        "runtime": info.runtime,
        "privileged": info.privileged,
        "pod": info.pod_name,
        "namespace": info.pod_namespace,
        "labels": info.labels,
        "cgroup_id": info.cgroup_id,
        "pid": info.pid,
    }


class RegistryContainers:
    """ContainersView over the container registry."""

    def __init__(self, registry: ContainerRegistry) -> None:
        self._registry = registry

    def containers(self) -> list[dict[str, Any]]:
        return [container_doc(info) for info in self._registry.containers()]

    def container(self, id_or_name: str) -> dict[str, Any] | None:
        for info in self._registry.containers():
            if id_or_name in (info.id, info.short_id, info.name):
                return container_doc(info)
        return None


def table_health(registry: ContainerRegistry, proctable: ProcessTable) -> dict[str, Any]:
    """The daemon's tables against each other: processes whose container the registry no
    longer has (they go with their exit events), and the registry's own sizes."""
    known = {info.id for info in registry.containers()}
    stale = sum(count for container_id, count in proctable.container_ids().items()
                if container_id != HOST_ID and container_id not in known)
    return {"processes_of_gone_containers": stale, **registry.table_stats()}
