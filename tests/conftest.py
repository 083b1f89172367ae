"""Shared fixtures: gating of eBPF and Docker tests (fail in CI, skip elsewhere), containers."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

REPO = Path(__file__).resolve().parents[1]
TEST_IMAGE = os.environ.get("CAUDITD_TEST_IMAGE", "cauditd-test:latest")
T = TypeVar("T")
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

    def exec(self, name: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """`docker exec` in one of our containers."""
        cmd = ["docker", "exec", name, *args]
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


class DaemonThread:
    """The whole Daemon in-process, on its own event loop in a thread; its events are recorded.

    For e2e tests that read decoded events (probes, process table, container metadata) without
    a subprocess: `wait_for(predicate)` returns the first recorded event that matches.
    """

    def __init__(self, config: Any) -> None:
        from cauditd.daemon import Daemon

        seen: list[Any] = []
        self.events = seen

        def record(event: Any) -> None:
            name = event.container.name
            if not name or name.startswith("cauditd-t-"):  # not other helpers' containers
                seen.append(event)

        self.daemon = Daemon(config)
        self.daemon.pipeline.taps.append(record)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.daemon.start(), self.loop).result(timeout=60)

    def stop(self) -> None:
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self.daemon.stop(), self.loop).result(timeout=60)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
        self.loop.close()

    def run(self, coro: Any, timeout: float = 30) -> Any:
        """Await `coro` on the daemon's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=timeout)

    def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the daemon's loop (its state is not thread-safe) and return its result."""

        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout=10)

    def wait_for(self, predicate: Callable[[Any], bool], timeout: float = 20) -> Any:
        deadline = time.monotonic() + timeout
        checked = 0
        while time.monotonic() < deadline:
            events = list(self.events)
            for event in events[checked:]:
                if predicate(event):
                    return event
            checked = len(events)
            time.sleep(0.05)
        raise AssertionError(f"no matching event among {len(self.events)} recorded")


def daemon_config(tmp_path: Path, **probes: Any) -> Any:
    """A Config for an in-process daemon: state under tmp_path, no rules, API on a free port."""
    from cauditd.config import Config

    config = Config()
    config.daemon.state_dir = str(tmp_path / "state")
    config.rules.paths = []
    config.api.listen = "127.0.0.1:0"
    config.probes.all_syscalls = True
    for key, value in probes.items():
        setattr(config.probes, key, value)
    return config


@pytest.fixture(scope="module")
def running_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonThread]:
    """One in-process Daemon for a whole test module (a BCC compile is ~0.5 s and ~135 MB)."""
    for problem in (ebpf_problem(), docker_problem()):
        if problem:
            unavailable(problem)
    runner = DaemonThread(daemon_config(tmp_path_factory.mktemp("daemon")))
    runner.start()
    try:
        yield runner
    finally:
        runner.stop()
