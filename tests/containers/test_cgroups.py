"""cgroup paths of every runtime and layout to container ids."""

from __future__ import annotations

import pytest

from cauditd.containers.cgroups import container_from_path

ID = "a" * 64


@pytest.mark.parametrize(
    ("path", "runtime"),
    [
        (f"/docker/{ID}", "docker"),
        (f"/system.slice/docker-{ID}.scope", "docker"),
        (f"/kubepods.slice/kubepods-burstable.slice/kubepods-pod1.slice/cri-containerd-{ID}.scope",
         "containerd"),
        (f"/kubepods/besteffort/pod1/{ID}", "containerd"),
        (f"/kubepods.slice/kubepods-pod1.slice/crio-{ID}.scope", "crio"),
        (f"/machine.slice/libpod-{ID}.scope", "podman"),
        (f"/system.slice/docker-{ID}.scope/init.scope", "docker"),
    ],
)  # fmt: skip
def test_container_paths(path: str, runtime: str) -> None:
    found = container_from_path(path)
    assert found is not None and (found.container_id, found.runtime) == (ID, runtime)


@pytest.mark.parametrize("path", ["/", "/system.slice/ssh.service", "/user.slice/user-0.slice"])
def test_host_paths(path: str) -> None:
    assert container_from_path(path) is None
