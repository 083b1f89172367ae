"""CRI-O metadata: the client against a local unix-socket server playing CRI-O's inspect endpoint,
and the registry resolving a real crio-<id>.scope cgroup through it."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from cauditd.config import ProbesConfig
from cauditd.containers.cgroups import find_cgroup2_root
from cauditd.containers.crio import CrioClient
from cauditd.containers.registry import ContainerRegistry
from tests.conftest import unavailable

ID = "c" * 64
# A container as CRI-O's GET /containers/{id} returns it (server/inspect.go, types.ContainerInfo).
CRIO_CONTAINER = {
    "name": "k8s_web_web-0_shop_5f3c2d1e-0000-4000-8000-000000000001_0",
    "pid": 4242,
    "image": "registry.example/shop/web:1.2",
    "image_ref": "sha256:" + "d" * 64,
    "created_time": 1700000000000000000,
    "labels": {
        "io.kubernetes.container.name": "web",
        "io.kubernetes.pod.name": "web-0",
        "io.kubernetes.pod.namespace": "shop",
        "io.kubernetes.pod.uid": "5f3c2d1e-0000-4000-8000-000000000001",
    },
    "annotations": {"io.kubernetes.container.hash": "1a2b3c"},
    "crio_annotations": {
        "io.kubernetes.cri-o.PrivilegedRuntime": "true",
        "io.kubernetes.cri-o.ContainerType": "container",
    },
    "log_path": "/var/log/pods/shop_web-0/web/0.log",
    "root": "/var/lib/containers/storage/overlay/e/merged",
    "sandbox": "e" * 64,
    "ip_addresses": ["10.88.0.5"],
}


class FakeCrio:
    """CRI-O's inspect endpoint on a unix socket: known containers answer, others 404."""

    def __init__(self, containers: dict[str, dict[str, Any]]) -> None:
        self.containers = containers
        self.requests: list[str] = []

    async def container(self, request: web.Request) -> web.Response:
        container_id = request.match_info["id"]
        self.requests.append(container_id)
        doc = self.containers.get(container_id)
        if doc is None:
            return web.Response(status=404, text="can't find the container with id")
        return web.json_response(doc)

    async def serve(self, socket_path: str) -> web.AppRunner:
        app = web.Application()
        app.router.add_get("/containers/{id}", self.container)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.UnixSite(runner, socket_path).start()
        return runner


@pytest.fixture
async def crio(tmp_path: Path) -> AsyncIterator[tuple[FakeCrio, str]]:
    fake = FakeCrio({ID: CRIO_CONTAINER})
    socket_path = str(tmp_path / "crio.sock")
    runner = await fake.serve(socket_path)
    try:
        yield fake, socket_path
    finally:
        await runner.cleanup()


async def test_inspect_reads_name_image_labels_pid_and_privileged(
    crio: tuple[FakeCrio, str],
) -> None:
    fake, socket_path = crio
    client = CrioClient(socket_path)
    try:
        info = await client.inspect(ID)
    finally:
        await client.close()
    assert info is not None and fake.requests == [ID]
    assert (info.id, info.name, info.runtime) == (ID, "web", "crio")
    assert info.image == "registry.example/shop/web:1.2"
    assert info.image_id == "sha256:" + "d" * 64
    assert (info.pod_name, info.pod_namespace, info.pid) == ("web-0", "shop", 4242)
    assert info.privileged


async def test_unknown_container_and_absent_socket_answer_none(
    crio: tuple[FakeCrio, str], tmp_path: Path
) -> None:
    fake, socket_path = crio
    client, absent = CrioClient(socket_path), CrioClient(str(tmp_path / "none.sock"))
    try:
        assert await client.inspect("f" * 64) is None
        assert await absent.inspect(ID) is None
    finally:
        await client.close()
        await absent.close()
    assert fake.requests == ["f" * 64]


class NoFilter:
    def track(self, cgroup_id: int) -> None: ...
    def ignore(self, cgroup_id: int) -> None: ...
    def forget(self, cgroup_id: int) -> None: ...
    def add_watch_root(self, cgroup_id: int) -> None: ...
    def cgroup_ids(self) -> list[int]: return []


@pytest.fixture
def crio_cgroup() -> Iterator[Path]:
    """A real cgroup shaped like CRI-O's (…/crio-<id>.scope), removed after the test."""
    if os.geteuid() != 0:
        unavailable("creating a cgroup needs root")
    parent = find_cgroup2_root() / f"cauditd-t-{uuid.uuid4().hex[:8]}"
    scope = parent / f"crio-{ID}.scope"
    scope.mkdir(parents=True)
    try:
        yield scope
    finally:
        scope.rmdir()
        parent.rmdir()


async def test_registry_asks_crio_for_a_crio_cgroup(
    crio: tuple[FakeCrio, str], crio_cgroup: Path, tmp_path: Path
) -> None:
    _fake, socket_path = crio
    config = ProbesConfig(
        docker_socket=str(tmp_path / "no-docker.sock"),
        containerd_socket=str(tmp_path / "no-containerd.sock"),
        crio_socket=socket_path,
    )
    registry = ContainerRegistry(config, [NoFilter()])
    arrived = asyncio.Event()
    registry.on_metadata.append(lambda container_id: arrived.set())
    cgroup_id = os.stat(crio_cgroup).st_ino
    try:
        info = registry.resolve(cgroup_id)
        assert info is not None and info.id == ID and registry.metadata_pending(ID)
        await asyncio.wait_for(arrived.wait(), 10)
    finally:
        await registry.stop()
    assert (info.name, info.runtime, info.pid) == ("web", "crio", 4242)
    assert info.image == "registry.example/shop/web:1.2"
    assert info.pod_name == "web-0" and info.privileged
