"""CRI-O's inspect endpoint over its unix socket (`GET /containers/<id>`): container metadata."""

from __future__ import annotations

import logging
import os
from typing import Any

import aiohttp

from cauditd.events import ContainerInfo

log = logging.getLogger(__name__)

API = "http://crio"
PRIVILEGED_ANNOTATION = "io.kubernetes.cri-o.PrivilegedRuntime"


class CrioClient:
    """Reads container metadata from CRI-O; calls fail soft (None) when it is down or absent."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self._session: aiohttp.ClientSession | None = None

    def available(self) -> bool:
        return bool(self.socket_path) and os.path.exists(self.socket_path)

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.UnixConnector(path=self.socket_path),
                timeout=aiohttp.ClientTimeout(total=3, sock_connect=2),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def inspect(self, container_id: str) -> ContainerInfo | None:
        """The container as CRI-O describes it, or None (unknown to CRI-O, or CRI-O down)."""
        if not self.available():
            return None
        try:
            async with self._http().get(f"{API}/containers/{container_id}") as resp:
                if resp.status != 200:
                    return None
                doc: dict[str, Any] = await resp.json(content_type=None)
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            log.debug("crio inspect %s: %s", container_id[:12], exc)
            return None
        return container_info(container_id, doc)


def container_info(container_id: str, doc: dict[str, Any]) -> ContainerInfo:
    """ContainerInfo from CRI-O's ContainerInfo JSON (name, pid, image, image_ref, labels,
    crio_annotations...). The Kubernetes container name wins over CRI-O's k8s_... name."""
    labels = {str(k): str(v) for k, v in (doc.get("labels") or {}).items()}
    annotations = doc.get("crio_annotations") or {}
    return ContainerInfo(
        id=container_id,
        name=labels.get("io.kubernetes.container.name") or str(doc.get("name") or ""),
        image=str(doc.get("image") or ""),
        image_id=str(doc.get("image_ref") or ""),
        runtime="crio",
        labels=labels,
        privileged=str(annotations.get(PRIVILEGED_ANNOTATION, "")).lower() == "true",
        pid=int(doc.get("pid") or 0),
    )
