"""The registry forgets what is gone (cgroups after a grace, then their containers, in the
kernel's map too) and names containers from dockerd's events before any inspect answers. On a
directory tree of our own standing in for the cgroup2 root; Docker is down (no socket)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from cauditd.config import ProbesConfig
from cauditd.containers import registry as registry_module
from cauditd.containers.docker import announced, decode_json
from cauditd.containers.registry import ContainerRegistry

ID = "d" * 64


class RecordingFilter:
    """The kernel's cgroup map as the registry drives it."""

    def __init__(self) -> None:
        self.state: dict[int, str] = {}

    def track(self, cgroup_id: int) -> None:
        self.state[cgroup_id] = "tracked"

    def ignore(self, cgroup_id: int) -> None:
        self.state[cgroup_id] = "ignored"

    def forget(self, cgroup_id: int) -> None:
        self.state.pop(cgroup_id, None)

    def add_watch_root(self, cgroup_id: int) -> None:
        pass

    def cgroup_ids(self) -> list[int]:
        return list(self.state)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "cgroup"
    (root / "docker" / ID).mkdir(parents=True)
    (root / "system.slice" / "cron.service").mkdir(parents=True)
    return root


def _registry(root: Path, tmp_path: Path) -> tuple[ContainerRegistry, RecordingFilter]:
    kernel = RecordingFilter()
    config = ProbesConfig(cgroup_root=str(root), docker_socket=str(tmp_path / "no.sock"),
                          containerd_socket=str(tmp_path / "no2.sock"),
                          crio_socket=str(tmp_path / "no3.sock"))
    return ContainerRegistry(config, [kernel]), kernel


async def test_gone_cgroups_are_forgotten_after_the_grace(tree: Path, tmp_path: Path) -> None:
    registry, kernel = _registry(tree, tmp_path)
    container_cgroup = os.stat(tree / "docker" / ID).st_ino
    host_cgroup = os.stat(tree / "system.slice" / "cron.service").st_ino
    try:
        assert registry.resolve(container_cgroup) is not None
        assert registry.resolve(host_cgroup) is None
        assert kernel.state == {container_cgroup: "tracked", host_cgroup: "ignored"}
        shutil.rmtree(tree / "docker" / ID)
        shutil.rmtree(tree / "system.slice" / "cron.service")
        await registry.collect_garbage(now=1000.0)
        assert registry.resolve(container_cgroup) is not None  # late events still resolve
        assert registry.table_stats()["cgroups_gone"] == 2
        await registry.collect_garbage(now=1000.0 + registry_module.CGROUP_GRACE_S)
        assert kernel.state == {}
        assert registry.containers() == [] and registry.get(ID) is None
        assert registry.table_stats()["cgroups_known"] == 0
    finally:
        await registry.stop()


async def test_a_path_made_again_is_a_new_cgroup(tree: Path, tmp_path: Path) -> None:
    """A restarted container gets a new cgroup at the same path: the old id goes, the container
    stays under the new one."""
    registry, kernel = _registry(tree, tmp_path)
    old = os.stat(tree / "docker" / ID).st_ino
    try:
        registry.resolve(old)
        (tree / "docker" / "next").mkdir()  # made while the old one exists: another inode
        (tree / "docker" / ID).rmdir()
        (tree / "docker" / "next").rename(tree / "docker" / ID)
        new = os.stat(tree / "docker" / ID).st_ino
        assert new != old and registry.resolve(new) is registry.get(ID)
        for now in (0.0, registry_module.CGROUP_GRACE_S):
            await registry.collect_garbage(now=now)
        assert kernel.state == {new: "tracked"} and registry.get(ID) is not None
    finally:
        await registry.stop()


async def test_container_is_named_from_dockers_create_event(tree: Path, tmp_path: Path) -> None:
    """`docker run --rm` of a short command: the container may be gone before any inspect, so
    the name, image and labels of dockerd's create event name it."""
    registry, _kernel = _registry(tree, tmp_path)
    try:
        await registry._on_docker_event({
            "Type": "container", "Action": "create", "timeNano": 1,
            "Actor": {"ID": ID, "Attributes": {"name": "short-lived", "image": "busybox:1",
                                               "team": "web"}}})
        info = registry.resolve(os.stat(tree / "docker" / ID).st_ino)
        assert info is not None
        assert (info.name, info.image, info.labels) == ("short-lived", "busybox:1",
                                                        {"team": "web"})
    finally:
        await registry.stop()


def test_docker_json_with_undecodable_bytes_is_kept() -> None:
    """Names and labels are the container creator's bytes: never a lost document."""
    doc = decode_json(b'{"Actor": {"ID": "' + ID.encode() + b'", "Attributes": '
                      b'{"name": "x\xfe\xff", "image": "i"}}}')
    seen = announced(doc)
    assert seen is not None and seen.name == "x\udcfe\udcff"
    assert seen.name.encode("utf-8", "surrogateescape") == b"x\xfe\xff"


async def test_sweep_deletes_the_kernels_own_verdicts_about_gone_cgroups(
        tree: Path, tmp_path: Path) -> None:
    """The probes mark a host cgroup IGNORED on first sight, without the registry: when the
    cgroup goes, only the sweep can delete that entry (else the map fills up)."""
    registry, kernel = _registry(tree, tmp_path)
    session = tree / "user.slice" / "session-1.scope"
    session.mkdir(parents=True)
    cron = os.stat(tree / "system.slice" / "cron.service").st_ino
    kernel.state = {os.stat(session).st_ino: "ignored", cron: "ignored"}
    container = os.stat(tree / "docker" / ID).st_ino
    try:
        registry.resolve(container)
        session.rmdir()
        shutil.rmtree(tree / "docker" / ID)  # the registry's own: its grace, not the sweep
        assert await registry.sweep_kernel() == 1
        assert kernel.state == {cron: "ignored", container: "tracked"}
    finally:
        await registry.stop()
