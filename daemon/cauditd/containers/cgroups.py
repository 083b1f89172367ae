"""The cgroup v2 tree: cgroup ids (directory inodes) to paths, and paths to container ids.

Handles pure cgroup v2 (/sys/fs/cgroup) and the hybrid layout (/sys/fs/cgroup/unified), with the
path shapes of Docker (/docker/<id>, docker-<id>.scope), containerd (cri-containerd-<id>.scope,
/k8s.io/<id>), CRI-O (crio-<id>.scope), Podman (libpod-<id>.scope) and kubepods trees.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

_RUNTIME_PREFIXES = {
    "docker": "docker",
    "cri-containerd": "containerd",
    "containerd": "containerd",
    "crio": "crio",
    "libpod": "podman",
}
_CONTAINER_DIR = re.compile(
    r"^(?:(?P<prefix>docker|cri-containerd|containerd|crio|libpod)-)?(?P<id>[0-9a-f]{64})(?:\.scope)?$"
)
# Parents under which container cgroups are created, by runtime and cgroup driver.
WATCH_ROOT_NAMES = (
    "docker",
    "system.slice",
    "machine.slice",
    "kubepods",
    "kubepods.slice",
    "k8s.io",
    "default",
    "libpod_parent",
)


@dataclass(frozen=True, slots=True)
class ContainerCgroup:
    """A container's cgroup as its path names it."""

    container_id: str
    runtime: str
    # Where the runtime may keep it: containerd's namespace for a bare /<namespace>/<id> path
    # (ctr and nerdctl with cgroupfs), "k8s.io" under kubepods or cri-containerd-, "moby" for
    # Docker; "" when the path says nothing.
    namespace: str = ""


def container_from_path(path: str) -> ContainerCgroup | None:
    """The container a cgroup path belongs to, or None for a host cgroup.

    A container's own nested cgroups (systemd inside a container) belong to it too, so the
    innermost component that looks like a container wins.
    """
    parts = [p for p in path.split("/") if p]
    for index in range(len(parts) - 1, -1, -1):
        match = _CONTAINER_DIR.match(parts[index])
        if match is None:
            continue
        prefix = match.group("prefix")
        parent = parts[index - 1] if index else ""
        if prefix:
            runtime = _RUNTIME_PREFIXES[prefix]
        elif parent == "docker":
            runtime = "docker"
        elif parent in ("k8s.io", "default") or any(p.startswith("kubepods") for p in parts):
            runtime = "containerd"
        else:
            runtime = "unknown"
        return ContainerCgroup(match.group("id"), runtime, _namespace(runtime, parent))
    return None


def _namespace(runtime: str, parent: str) -> str:
    """The containerd namespace a container probably lives in, from its cgroup path."""
    if runtime == "docker":
        return "moby"
    if runtime == "containerd":
        return parent if parent in ("k8s.io", "default") else "k8s.io"
    if runtime == "unknown" and "." not in parent:  # /<namespace>/<id>, not system.slice/...
        return parent
    return ""


def find_cgroup2_root(configured: str = "") -> Path:
    """The cgroup v2 mount: the configured one, else /sys/fs/cgroup or /sys/fs/cgroup/unified."""
    if configured:
        return Path(configured)
    with open("/proc/self/mounts", errors="surrogateescape") as mounts:  # paths are bytes
        found = [line.split()[1] for line in mounts if line.split()[2:3] == ["cgroup2"]]
    for candidate in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
        if candidate in found:
            return Path(candidate)
    if found:
        return Path(found[0])
    raise FileNotFoundError("no cgroup2 file system is mounted")


MAX_CREATED = 4096  # cgroups remembered from cgroup_mkdir, oldest dropped first


class CgroupTree:
    """Maps cgroup ids to paths relative to the cgroup2 root, rescanning on a miss."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._paths: dict[int, str] = {}
        self._created: dict[int, str] = {}

    def cgroup_id(self, path: str) -> int:
        return os.stat(self.root / path.lstrip("/")).st_ino

    def path(self, cgroup_id: int) -> str | None:
        """The path of a cgroup id, rescanning the tree once when it is not known."""
        found = self._paths.get(cgroup_id) or self._created.get(cgroup_id)
        if found is None:
            self.scan()
            found = self._paths.get(cgroup_id)
        return found

    def created(self, cgroup_id: int, path: str) -> None:
        """A cgroup the kernel just made (cgroup_mkdir): remembered even once it is removed, so
        a container that lived for milliseconds can still be named from its events."""
        if len(self._created) >= MAX_CREATED:
            self._created.pop(next(iter(self._created)))
        self._created[cgroup_id] = path

    def scan(self) -> dict[int, str]:
        """Walk the whole tree (a few thousand directories on a busy node)."""
        paths: dict[int, str] = {}
        root = str(self.root)
        for dirpath, _dirs, _files in os.walk(root):
            try:
                inode = os.stat(dirpath).st_ino
            except FileNotFoundError:
                continue
            paths[inode] = "/" + os.path.relpath(dirpath, root) if dirpath != root else "/"
        self._paths = paths
        return paths

    def live_ids(self) -> set[int]:
        """The id of every cgroup now (a walk of the tree, without changing what is known)."""
        found = set()
        for dirpath, _dirs, _files in os.walk(self.root):
            try:
                found.add(os.stat(dirpath).st_ino)
            except FileNotFoundError:
                continue
        return found

    def gone(self, cgroups: list[tuple[int, str]]) -> list[int]:
        """The ids of `cgroups` (id, path) whose directory is gone (or is a newer cgroup of the
        same path, with another id). A stat each: call off the event loop."""
        found = []
        for cgroup_id, path in cgroups:
            try:
                alive = os.stat(self.root / path.lstrip("/")).st_ino == cgroup_id
            except OSError:
                alive = False
            if not alive:
                found.append(cgroup_id)
        return found

    def forget(self, cgroup_id: int) -> None:
        self._paths.pop(cgroup_id, None)
        self._created.pop(cgroup_id, None)

    def watch_roots(self, extra: Iterable[str] = ()) -> dict[int, str]:
        """Existing parents of container cgroups (see WATCH_ROOT_NAMES, plus `extra` top-level
        names such as containerd's namespaces), by cgroup id."""
        roots: dict[int, str] = {}
        for name in (*WATCH_ROOT_NAMES, *extra):
            path = self.root / name
            if path.is_dir():
                roots[path.stat().st_ino] = "/" + name
        return roots

    def containers(self) -> dict[int, tuple[str, ContainerCgroup]]:
        """Every container cgroup in the tree now: cgroup id to (path, container)."""
        found = {}
        for cgroup_id, path in self.scan().items():
            container = container_from_path(path)
            if container is not None and path.rstrip("/").endswith(
                container.container_id + (".scope" if path.endswith(".scope") else "")
            ):
                found[cgroup_id] = (path, container)
        return found
