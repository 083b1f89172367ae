"""containerd's gRPC API over its unix socket: container metadata, init pid, and task events.

The few protobuf messages needed are spoken by hand (cauditd.protowire) and sent
with grpcio's raw-bytes calls: the PyPI `containerd` bindings are generated for protobuf 3 and
refuse to load under protobuf 4+. grpcio is imported lazily; without it, or without the socket,
every call answers nothing and the daemon runs as before.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

from cauditd.events import ContainerInfo
from cauditd.protowire import decode_message, encode_string

log = logging.getLogger(__name__)

CONTAINERS_GET = "/containerd.services.containers.v1.Containers/Get"
TASKS_GET = "/containerd.services.tasks.v1.Tasks/Get"
NAMESPACES_LIST = "/containerd.services.namespaces.v1.Namespaces/List"
EVENTS_SUBSCRIBE = "/containerd.services.events.v1.Events/Subscribe"
NAMESPACE_HEADER = "containerd-namespace"
# Task and container lifecycle topics the registry follows (containerd's events/*.proto).
TOPICS = ("/tasks/create", "/tasks/start", "/tasks/delete", "/containers/delete")
CALL_TIMEOUT = 3.0

# Names the runtimes put on containers, most specific first.
NAME_LABELS = ("io.kubernetes.container.name", "nerdctl/name")


def _string(fields: dict[int, list[Any]], number: int) -> str:
    values = fields.get(number)
    return values[-1].decode(errors="replace") if values else ""


def _message(fields: dict[int, list[Any]], number: int) -> dict[int, list[Any]]:
    values = fields.get(number)
    return decode_message(values[-1]) if values else {}


def _string_map(fields: dict[int, list[Any]], number: int) -> dict[str, str]:
    entries = (decode_message(entry) for entry in fields.get(number, ()))
    return {_string(e, 1): _string(e, 2) for e in entries}


@dataclass(slots=True)
class ContainerdContainer:
    """A container as containerd's Containers/Get (and Tasks/Get, for the pid) describe it."""

    id: str
    namespace: str
    image: str
    labels: dict[str, str]
    spec: dict[str, Any]
    pid: int = 0

    @property
    def name(self) -> str:
        return next((self.labels[k] for k in NAME_LABELS if self.labels.get(k)), self.id)

    @property
    def args(self) -> list[str]:
        return list((self.spec.get("process") or {}).get("args") or [])

    @property
    def namespaces(self) -> list[str]:
        """Linux namespaces the container gets of its own (a missing one is the host's)."""
        linux = self.spec.get("linux") or {}
        return [str(ns.get("type")) for ns in linux.get("namespaces") or []]

    @property
    def privileged(self) -> bool:
        """Privileged as containerd's CRI and Docker build it: CAP_SYS_ADMIN in the bounding
        set and no masked /proc paths (a plain --cap-add SYS_ADMIN keeps the masks)."""
        caps = (self.spec.get("process") or {}).get("capabilities") or {}
        masked = (self.spec.get("linux") or {}).get("maskedPaths")
        return "CAP_SYS_ADMIN" in (caps.get("bounding") or []) and not masked

    def info(self) -> ContainerInfo:
        return ContainerInfo(
            id=self.id,
            name=self.name,
            image=self.image,
            runtime="containerd",
            labels=dict(self.labels),
            privileged=self.privileged,
            pid=self.pid,
        )


def parse_container(payload: bytes, namespace: str) -> ContainerdContainer:
    """A GetContainerResponse (containers.v1) to a ContainerdContainer; the pid is filled later."""
    container = _message(decode_message(payload), 1)
    spec_any = _message(container, 5)  # google.protobuf.Any: type_url 1, value 2
    spec_json = spec_any.get(2, [b""])[-1]
    try:
        spec = json.loads(spec_json) if spec_json else {}
    except ValueError:
        spec = {}
    return ContainerdContainer(
        id=_string(container, 1),
        namespace=namespace,
        image=_string(container, 3),
        labels=_string_map(container, 2),
        spec=spec if isinstance(spec, dict) else {},
    )


def parse_task_pid(payload: bytes) -> int:
    """The init pid from a tasks.v1 GetResponse (process field 1, types.Process.pid 3)."""
    process = _message(decode_message(payload), 1)
    return int(process.get(3, [0])[-1])


@dataclass(frozen=True, slots=True)
class TaskEvent:
    """One lifecycle event from containerd's event stream."""

    namespace: str
    topic: str
    container_id: str
    pid: int = 0


def parse_envelope(payload: bytes) -> TaskEvent:
    """An events.v1 Envelope (namespace 2, topic 3, event Any 4) carrying a task or container
    event; container_id and pid are fields 1 and 6 (TaskCreate) or 2 (TaskStart/TaskDelete)."""
    envelope = decode_message(payload)
    topic = _string(envelope, 3)
    event = decode_message(_message(envelope, 4).get(2, [b""])[-1])
    pid_field = 6 if topic == "/tasks/create" else 2
    pid = int(event.get(pid_field, [0])[-1]) if topic.startswith("/tasks/") else 0
    return TaskEvent(_string(envelope, 2), topic, _string(event, 1), pid)


@functools.cache
def _grpc() -> Any:
    """The grpc module, or None when grpcio is not installed (looked up once)."""
    try:
        import grpc.aio
    except ImportError:
        return None
    return grpc


class ContainerdClient:
    """Reads container metadata from containerd; calls fail soft (None, empty) when it is down,
    absent, or grpcio is not installed."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self._channel: Any = None

    def available(self) -> bool:
        return bool(self.socket_path) and os.path.exists(self.socket_path) and _grpc() is not None

    def _open(self) -> Any:
        if self._channel is None:
            self._channel = _grpc().aio.insecure_channel(f"unix://{self.socket_path}")
        return self._channel

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    async def _call(self, method: str, request: bytes, namespace: str = "") -> bytes | None:
        """A unary call with raw bytes; None when the object is not found or containerd is down."""
        grpc = _grpc()
        metadata = ((NAMESPACE_HEADER, namespace),) if namespace else None
        try:
            response: bytes = await self._open().unary_unary(method)(
                request, metadata=metadata, timeout=CALL_TIMEOUT
            )
            return response
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                log.debug("containerd %s: %s", method.rsplit("/", 1)[-1], exc.details())
            return None

    async def container(
        self, container_id: str, namespaces: Iterable[str]
    ) -> ContainerdContainer | None:
        """The container in the first of `namespaces` that has it, with its task's init pid."""
        if not self.available():
            return None
        request = encode_string(1, container_id)
        for namespace in namespaces:
            payload = await self._call(CONTAINERS_GET, request, namespace)
            if payload is None:
                continue
            found = parse_container(payload, namespace)
            task = await self._call(TASKS_GET, request, namespace)
            found.pid = parse_task_pid(task) if task is not None else 0
            return found
        return None

    async def namespaces(self) -> list[str]:
        if not self.available():
            return []
        payload = await self._call(NAMESPACES_LIST, b"")
        if payload is None:
            return []
        return [_string(decode_message(ns), 1) for ns in decode_message(payload).get(1, ())]

    async def events(self) -> AsyncIterator[TaskEvent]:
        """Task and container lifecycle events of every namespace, as containerd streams them."""
        request = b"".join(encode_string(1, f'topic=="{topic}"') for topic in TOPICS)
        stream = self._open().unary_stream(EVENTS_SUBSCRIBE)(request)
        try:
            async for payload in stream:
                yield parse_envelope(payload)
        finally:
            stream.cancel()
