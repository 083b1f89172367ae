"""Shared fixtures: gating of eBPF and Docker tests (fail in CI, skip elsewhere), containers."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TEST_IMAGE = os.environ.get("CAUDITD_TEST_IMAGE", "cauditd-test:latest")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(reason: str) -> None:
    """In CI a missing capability is a failure with its reason; elsewhere a skip."""
    if IN_CI:
        pytest.fail(f"CI=true and this test cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


def ebpf_problem() -> str | None:
    if os.geteuid() != 0:
        return "eBPF tests need root"
    try:
        from cauditd.probes.bpf import ProbeError, check_environment

        check_environment()
    except ProbeError as exc:
        return str(exc)
    return None


def docker_problem() -> str | None:
    if shutil.which("docker") is None:
        return "docker client not installed (make test installs docker.io)"
    probe = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        return f"Docker engine not answering: {probe.stderr.strip()[:200]}"
    image = subprocess.run(["docker", "image", "inspect", TEST_IMAGE], capture_output=True)
    if image.returncode != 0:
        return f"test image {TEST_IMAGE} missing (scripts/test-image.sh builds it)"
    return None


@pytest.fixture(scope="session")
def ebpf() -> None:
    """Use in tests that load probes into the kernel."""
    problem = ebpf_problem()
    if problem:
        unavailable(problem)


@pytest.fixture(scope="session")
def docker() -> None:
    """Use in tests that run containers from the local test image."""
    problem = docker_problem()
    if problem:
        unavailable(problem)


class Containers:
    """Runs test containers named cauditd-t-*, and removes every one it started."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def run(
        self,
        *args: str,
        name: str = "",
        detach: bool = False,
        options: tuple[str, ...] = (),
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        """`docker run` of the test image with `args` as its command; returns the result.

        With detach=True the output is the container id. The container is removed at teardown.
        """
        name = name or f"cauditd-t-{uuid.uuid4().hex[:10]}"
        self.names.append(name)
        cmd = [
            "docker",
            "run",
            "--name",
            name,
            *(["-d"] if detach else []),
            *options,
            TEST_IMAGE,
            *args,
        ]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)

    def inspect_id(self, name: str) -> str:
        out = subprocess.run(
            ["docker", "inspect", "-f", "{{.Id}}", name], capture_output=True, text=True, check=True
        )
        return out.stdout.strip()

    def remove_all(self) -> None:
        if self.names:
            subprocess.run(["docker", "rm", "-f", *self.names], capture_output=True, timeout=60)
            self.names.clear()


@pytest.fixture
def containers(docker: None) -> Iterator[Containers]:
    """A factory of test containers, all removed after the test."""
    box = Containers()
    try:
        yield box
    finally:
        box.remove_all()
