"""A small Docker Engine API client over its unix socket: inspect, list, and the event stream."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp

from cauditd.events import ContainerInfo, ContainerMount
from cauditd.findings import parse_rfc3339_ns

log = logging.getLogger(__name__)

API = "http://docker/v1.41"


class DockerClient:
    """Reads container metadata from dockerd; calls fail soft (None, empty) when it is down."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.UnixConnector(path=self.socket_path),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=2, sock_read=None),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def inspect(self, container_id: str) -> ContainerInfo | None:
        doc = await self.inspect_doc(container_id)
        return container_info(doc) if doc is not None else None

    async def inspect_doc(self, container_id: str) -> dict[str, Any] | None:
        """The raw /containers/{id}/json document, or None (gone, or dockerd down)."""
        try:
            async with self._http().get(
                f"{API}/containers/{container_id}/json", timeout=aiohttp.ClientTimeout(total=3)
            ) as resp:
                if resp.status != 200:
                    return None
                doc: dict[str, Any] = decode_json(await resp.read())
                return doc
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            log.debug("docker inspect %s: %s", container_id[:12], exc)
            return None

    async def known(self, container_id: str) -> bool | None:
        """True when dockerd has the container, False when it says it has not (404), None when
        it cannot tell (down, timeout)."""
        try:
            async with self._http().get(
                f"{API}/containers/{container_id}/json", timeout=aiohttp.ClientTimeout(total=3)
            ) as resp:
                return True if resp.status == 200 else False if resp.status == 404 else None
        except (aiohttp.ClientError, OSError, TimeoutError):
            return None

    async def running_ids(self) -> list[str]:
        try:
            async with self._http().get(
                f"{API}/containers/json", timeout=aiohttp.ClientTimeout(total=5)
            ) as resp:
                if resp.status != 200:
                    return []
                return [c["Id"] for c in decode_json(await resp.read())]
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError, KeyError, TypeError):
            return []

    async def events(
        self, since_ns: int = 0, on_open: Callable[[], None] | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Container lifecycle events (create, start, die, destroy) as dockerd streams them;
        with `since_ns`, those since then first (dockerd replays its recent events), so a
        stream that broke and reconnects misses nothing. `on_open` is called once the stream
        is open. Ends (or raises) when dockerd goes away."""
        filters = json.dumps({"type": ["container"], "event": list(LIFECYCLE)})
        params = {"filters": filters}
        if since_ns:
            params["since"] = f"{since_ns // 1_000_000_000}.{since_ns % 1_000_000_000:09d}"
        async with self._http().get(f"{API}/events", params=params) as resp:
            resp.raise_for_status()
            if on_open is not None:
                on_open()
            async for line in resp.content:
                if not line.strip():
                    continue
                try:
                    yield decode_json(line)
                except ValueError as exc:  # skip it: a reconnect would replay it again
                    log.warning("docker event that is not JSON skipped: %s", exc)


LIFECYCLE = ("create", "start", "die", "destroy")


def decode_json(raw: bytes) -> Any:
    """A document from dockerd: names, labels and env are whatever bytes the container's
    creator chose, so undecodable UTF-8 is kept as surrogate escapes (as the probes' strings
    are), never an exception that loses the document or, in the event stream, the stream."""
    return json.loads(raw.decode("utf-8", "surrogateescape"))


def announced(event: dict[str, Any]) -> ContainerInfo | None:
    """What a create/start event says of its container (name, image, labels: dockerd puts the
    labels beside name and image in the actor's attributes), before any inspect can."""
    actor = event.get("Actor") or {}
    attributes = dict(actor.get("Attributes") or {})
    container_id = str(actor.get("ID") or event.get("id") or "")
    if not container_id:
        return None
    name, image = str(attributes.pop("name", "")), str(attributes.pop("image", ""))
    return ContainerInfo(
        id=container_id, name=name, image=image, runtime="docker",
        labels={str(k): str(v) for k, v in attributes.items()},
    )


def container_info(doc: dict[str, Any]) -> ContainerInfo:
    """ContainerInfo from a /containers/{id}/json document."""
    config = doc.get("Config") or {}
    host_config = doc.get("HostConfig") or {}
    state = doc.get("State") or {}
    return ContainerInfo(
        id=doc["Id"],
        name=(doc.get("Name") or "").lstrip("/"),
        image=config.get("Image") or "",
        image_id=doc.get("Image") or "",
        runtime="docker",
        labels=dict(config.get("Labels") or {}),
        privileged=bool(host_config.get("Privileged")),
        pid=int(state.get("Pid") or 0),
        mounts=mounts(doc),
        started_ns=started_ns(state),
    )


def started_ns(state: dict[str, Any]) -> int:
    """When the container last started (State.StartedAt), ns since the epoch; 0 if never or
    unreadable (the engine writes 0001-01-01T00:00:00Z for a container not started yet)."""
    try:
        when = parse_rfc3339_ns(str(state.get("StartedAt") or ""))
    except ValueError:
        return 0
    return max(when, 0)


def mounts(doc: dict[str, Any]) -> tuple[ContainerMount, ...]:
    """The container's mounts (Falco's container.mount* fields) from its inspect document."""
    found = []
    for mount in doc.get("Mounts") or ():
        if isinstance(mount, dict):
            found.append(ContainerMount(
                source=str(mount.get("Source") or ""), dest=str(mount.get("Destination") or ""),
                mode=str(mount.get("Mode") or ""), rw=bool(mount.get("RW", True)),
                propagation=str(mount.get("Propagation") or "")))
    return tuple(found)


def upper_dir(doc: dict[str, Any]) -> str:
    """The container's writable overlay layer on the host (overlay2's UpperDir), or ""."""
    driver = doc.get("GraphDriver") or {}
    return str((driver.get("Data") or {}).get("UpperDir") or "")
