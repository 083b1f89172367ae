"""containerd metadata: the hand-spoken protobuf messages, cgroup namespace hints, and the daemon
reporting a real ctr container (in a namespace of its own) on Docker's containerd."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cauditd.containers.cgroups import container_from_path, find_cgroup2_root
from cauditd.containers.containerd import (
    ContainerdClient,
    ContainerdContainer,
    parse_container,
    parse_envelope,
    parse_task_pid,
)
from cauditd.events import ExecEvent
from cauditd.protowire import encode_string, encode_varint
from tests.conftest import (
    TEST_IMAGE,
    DaemonThread,
    daemon_config,
    docker_problem,
    ebpf_problem,
    unavailable,
)

ID = "b" * 64
# containerd's garbage collector empties a namespace within ~a second on a quiet host; under a
# busy CI run it once took over 20 s (the namespace was empty, and removable, soon after).
GC_WAIT_S = 90
SOCKET = os.environ.get("CAUDITD_CONTAINERD_SOCKET", "/var/run/docker/containerd/containerd.sock")
IMAGE_REF = "docker.io/library/" + TEST_IMAGE


def message(field: int, payload: bytes) -> bytes:
    return encode_varint(field << 3 | 2) + encode_varint(len(payload)) + payload


def varint_field(field: int, value: int) -> bytes:
    return encode_varint(field << 3) + encode_varint(value)


def container_response(labels: dict[str, str], spec: dict[str, Any]) -> bytes:
    """A GetContainerResponse as containerd sends it (containers.v1, spec in a protobuf Any)."""
    entries = b"".join(
        message(2, encode_string(1, k) + encode_string(2, v)) for k, v in labels.items()
    )
    spec_any = encode_string(1, "types.containerd.io/opencontainers/runtime-spec/1/Spec")
    spec_any += message(2, json.dumps(spec).encode())
    runtime = message(4, encode_string(1, "io.containerd.runc.v2"))
    container = encode_string(1, ID) + entries + encode_string(3, IMAGE_REF) + runtime
    container += message(5, spec_any) + encode_string(6, "overlayfs") + varint_field(99, 7)
    return message(1, container)


def test_container_response_decodes_to_labels_image_spec() -> None:
    labels = {"io.kubernetes.pod.name": "web-0", "io.kubernetes.container.name": "web"}
    spec = {"process": {"args": ["nginx", "-g", "daemon off;"]},
            "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}]}}  # fmt: skip
    found = parse_container(container_response(labels, spec), "k8s.io")
    assert (found.id, found.namespace, found.image) == (ID, "k8s.io", IMAGE_REF)
    assert found.labels == labels
    assert found.args == ["nginx", "-g", "daemon off;"] and found.namespaces == ["pid", "mount"]
    info = found.info()
    assert (info.name, info.runtime, info.pod_name) == ("web", "containerd", "web-0")


@pytest.mark.parametrize(
    ("spec", "privileged"),
    [
        ({"process": {"capabilities": {"bounding": ["CAP_SYS_ADMIN", "CAP_NET_RAW"]}},
          "linux": {}}, True),
        ({"process": {"capabilities": {"bounding": ["CAP_SYS_ADMIN"]}},
          "linux": {"maskedPaths": ["/proc/kcore"]}}, False),
        ({"process": {"capabilities": {"bounding": ["CAP_CHOWN"]}}, "linux": {}}, False),
        ({}, False),
    ],
)  # fmt: skip
def test_privileged_hint_from_the_spec(spec: dict[str, Any], privileged: bool) -> None:
    assert ContainerdContainer(ID, "default", "", {}, spec).privileged is privileged


def test_name_falls_back_from_kubernetes_to_nerdctl_to_id() -> None:
    def name(labels: dict[str, str]) -> str:
        return ContainerdContainer(ID, "default", "", labels, {}).name

    assert name({"io.kubernetes.container.name": "web", "nerdctl/name": "x"}) == "web"
    assert name({"nerdctl/name": "x"}) == "x"
    assert name({}) == ID


def test_task_pid_and_events_decode() -> None:
    process = encode_string(1, ID) + encode_string(2, ID) + varint_field(3, 31337)
    assert parse_task_pid(message(1, process)) == 31337

    def envelope(topic: str, event: bytes) -> bytes:
        event_any = encode_string(1, "containerd.events.X") + message(2, event)
        return encode_string(2, "k8s.io") + encode_string(3, topic) + message(4, event_any)

    create = encode_string(1, ID) + encode_string(2, "/run/bundle") + varint_field(6, 77)
    found = parse_envelope(envelope("/tasks/create", create))
    assert (found.namespace, found.topic, found.pid) == ("k8s.io", "/tasks/create", 77)
    assert found.container_id == ID
    start = encode_string(1, ID) + varint_field(2, 78)
    assert parse_envelope(envelope("/tasks/start", start)).pid == 78
    assert parse_envelope(envelope("/containers/delete", encode_string(1, ID))).container_id == ID


@pytest.mark.parametrize(
    ("path", "runtime", "namespace"),
    [
        (f"/k8s.io/{ID}", "containerd", "k8s.io"),
        (f"/default/{ID}", "containerd", "default"),
        (f"/cauditd-test/{ID}", "unknown", "cauditd-test"),
        (f"/kubepods.slice/kubepods-pod1.slice/cri-containerd-{ID}.scope", "containerd", "k8s.io"),
        (f"/docker/{ID}", "docker", "moby"),
        (f"/kubepods.slice/kubepods-pod1.slice/crio-{ID}.scope", "crio", ""),
        (f"/system.slice/{ID}", "unknown", ""),
    ],
)  # fmt: skip
def test_cgroup_path_names_the_containerd_namespace(
    path: str, runtime: str, namespace: str
) -> None:
    found = container_from_path(path)
    assert found is not None and (found.runtime, found.namespace) == (runtime, namespace)


async def test_absent_socket_answers_nothing(tmp_path: Path) -> None:
    client = ContainerdClient(str(tmp_path / "none.sock"))
    assert not client.available()
    assert await client.container(ID, ["default"]) is None
    assert await client.namespaces() == []
    await client.close()


# --- the real thing: ctr on Docker's containerd, the daemon in-process -------------------------


def ctr(namespace: str, *args: str, check: bool = True, stdin: Any = None) -> str:
    result = subprocess.run(
        ["ctr", "-a", SOCKET, "-n", namespace, *args],
        capture_output=True, text=True, timeout=60, stdin=stdin, check=False,
    )  # fmt: skip
    if check and result.returncode != 0:
        raise AssertionError(f"ctr {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


def containerd_problem() -> str | None:
    if shutil.which("ctr") is None:
        return "ctr not installed (containerd's client, Debian package containerd)"
    if not os.path.exists(SOCKET):
        return f"no containerd socket at {SOCKET} (Docker's engine runs one)"
    probe = subprocess.run(["ctr", "-a", SOCKET, "version"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"containerd not answering: {probe.stderr.strip()[:200]}"
    return docker_problem() or ebpf_problem()


class CtrNamespace:
    """A containerd namespace of the test's own with the test image imported; teardown removes
    its tasks, containers, image, the namespace and the cgroups runc left behind."""

    def __init__(self) -> None:
        self.name = f"cauditd-test-{uuid.uuid4().hex[:8]}"
        self.container_ids: list[str] = []

    def import_image(self) -> None:
        save = subprocess.Popen(["docker", "save", TEST_IMAGE], stdout=subprocess.PIPE)
        try:
            ctr(self.name, "images", "import", "-", stdin=save.stdout)
        finally:
            assert save.stdout is not None
            save.stdout.close()
            save.wait(timeout=60)

    def run(self, *command: str, labels: dict[str, str]) -> str:
        """`ctr run -d` of the test image (own network namespace, loopback only); its id."""
        container_id = uuid.uuid4().hex + uuid.uuid4().hex
        self.container_ids.append(container_id)
        flags = [arg for k, v in labels.items() for arg in ("--label", f"{k}={v}")]
        ctr(self.name, "run", "-d", *flags, IMAGE_REF, container_id, *command)
        return container_id

    def task_pid(self, container_id: str) -> int:
        for line in ctr(self.name, "tasks", "ls").splitlines()[1:]:
            fields = line.split()
            if fields and fields[0] == container_id:
                return int(fields[1])
        raise AssertionError(f"no task {container_id}")

    def remove_all(self) -> None:
        for container_id in self.container_ids:
            ctr(self.name, "tasks", "rm", "-f", container_id, check=False)
            ctr(self.name, "containers", "rm", container_id, check=False)
        # --sync: returns once the GC dropped its blobs (it may lag a minute on a loaded host)
        ctr(self.name, "images", "rm", "--sync", IMAGE_REF, check=False)
        deadline = time.monotonic() + GC_WAIT_S
        while time.monotonic() < deadline:  # containerd's GC drops blobs and snapshots after
            if self.name not in ctr("default", "namespaces", "ls", "-q", check=False).split():
                break
            ctr("default", "namespaces", "rm", self.name, check=False)  # refused while not empty
            time.sleep(0.2)
        for hierarchy in Path("/sys/fs/cgroup").iterdir():
            leftover = hierarchy / self.name
            if leftover.is_dir():
                leftover.rmdir()
        assert self.name not in ctr("default", "namespaces", "ls", "-q", check=False).split()


@pytest.fixture
def ctr_namespace() -> Iterator[CtrNamespace]:
    problem = containerd_problem()
    if problem:
        unavailable(problem)
    namespace = CtrNamespace()
    try:
        namespace.import_image()
        yield namespace
    finally:
        namespace.remove_all()


@pytest.fixture
def daemon(tmp_path: Path, ctr_namespace: CtrNamespace) -> Iterator[DaemonThread]:
    runner = DaemonThread(daemon_config(tmp_path, containerd_socket=SOCKET))
    runner.start()
    try:
        yield runner
    finally:
        runner.stop()


def exec_in(container_id: str, exe_name: str) -> Any:
    def match(ev: Any) -> bool:
        return (
            isinstance(ev, ExecEvent)
            and ev.container.id == container_id
            # the name asked for (the exe is the file the kernel ran: busybox for /bin/cat)
            and (ev.filename or ev.exe).rsplit("/", 1)[-1] == exe_name
        )

    return match


LABELS = {"io.kubernetes.pod.name": "web-0", "io.kubernetes.pod.namespace": "shop"}


@pytest.mark.ebpf
@pytest.mark.slow
def test_daemon_reports_a_ctr_containers_execs_with_containerd_metadata(
    daemon: DaemonThread, ctr_namespace: CtrNamespace
) -> None:
    # The first container of a brand-new namespace: its cgroup's parent did not exist when the
    # daemon started, so containerd's /tasks/create event is what makes the daemon track it.
    first = ctr_namespace.run(
        "sleep", "120", labels={**LABELS, "io.kubernetes.container.name": "cauditd-t-web"}
    )
    registry = daemon.daemon.registry
    deadline = time.monotonic() + 20
    while not daemon.call(lambda: (c := registry.get(first)) is not None and c.image):
        assert time.monotonic() < deadline, "containerd's task events never reached the registry"
        time.sleep(0.05)
    ctr(ctr_namespace.name, "tasks", "exec", "--exec-id", "probe", first, "cat", "/proc/version")
    event = daemon.wait_for(exec_in(first, "cat"))
    info = event.container
    assert (info.id, info.name, info.runtime) == (first, "cauditd-t-web", "containerd")
    assert info.image == IMAGE_REF
    assert (info.pod_name, info.pod_namespace) == ("web-0", "shop")
    assert info.pid == ctr_namespace.task_pid(first)
    assert not info.privileged

    # The namespace's cgroup is a watch root now: a second container's very first exec is seen
    # even if containerd's event came late.
    namespace_cgroup = find_cgroup2_root() / ctr_namespace.name
    assert namespace_cgroup.stat().st_ino in daemon.call(lambda: registry.watch_root_ids)
    second = ctr_namespace.run(
        "sleep", "121", labels={**LABELS, "io.kubernetes.container.name": "cauditd-t-api"}
    )
    event = daemon.wait_for(exec_in(second, "sleep"))
    assert event.argv == ("sleep", "121")
    assert (event.container.name, event.container.image) == ("cauditd-t-api", IMAGE_REF)
    assert event.container.pod_namespace == "shop"


@pytest.mark.ebpf
@pytest.mark.slow
def test_daemon_started_later_finds_a_running_ctr_container_through_containerd(
    tmp_path: Path, ctr_namespace: CtrNamespace
) -> None:
    # Already running when the daemon starts: found by the cgroup scan (/<namespace>/<id>),
    # unknown to Docker, so its metadata comes from containerd in the namespace the path names.
    running = ctr_namespace.run(
        "sleep", "122", labels={**LABELS, "io.kubernetes.container.name": "cauditd-t-db"}
    )
    daemon = DaemonThread(daemon_config(tmp_path, containerd_socket=SOCKET))
    daemon.start()
    try:
        namespace_cgroup = find_cgroup2_root() / ctr_namespace.name
        assert namespace_cgroup.stat().st_ino in daemon.call(
            lambda: daemon.daemon.registry.watch_root_ids
        )
        exec_cat = ("tasks", "exec", "--exec-id", "probe", running, "cat", "/proc/version")
        ctr(ctr_namespace.name, *exec_cat)
        event = daemon.wait_for(exec_in(running, "cat"))
    finally:
        daemon.stop()
    info = event.container
    assert (info.name, info.image, info.runtime) == ("cauditd-t-db", IMAGE_REF, "containerd")
    assert (info.pod_name, info.pod_namespace) == ("web-0", "shop")
    assert info.pid == ctr_namespace.task_pid(running)
