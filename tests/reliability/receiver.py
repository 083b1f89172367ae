"""Helpers of the reliability suite: the chat services (tests/alerts/services.py) served from
a thread for a daemon running as a subprocess, and small readers of a daemon's API."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from tests.alerts.services import ChatServices, Received


class ChatThread:
    """ChatServices on 127.0.0.1 in its own event loop thread."""

    def __init__(self) -> None:
        self.services = ChatServices()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> ChatThread:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.services.start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.services.stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def url(self, service: str) -> str:
        return self.services.url(service)

    def of(self, service: str) -> list[Received]:
        return list(self.services.of(service))

    @property
    def invalid(self) -> list[str]:
        return list(self.services.invalid)


def sinks_toml(chat: ChatThread, services: list[tuple[str, str]]) -> str:
    """[[alerts.sinks]] for each (service path, kind), no rate limit, every priority."""
    return "".join(
        f'[[alerts.sinks]]\nname = "{service}"\nkind = "{kind}"\nurl = "{chat.url(service)}"\n'
        'min_priority = "debug"\nrate_limit = ""\nretry_base_s = 0.05\nretry_max_s = 0.5\n'
        for service, kind in services
    )


def get_raw(api_url: str, path: str, timeout: float = 10) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(api_url + path, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def strict_json(raw: bytes) -> Any:
    """Parse as a strict parser would: UTF-8 without errors, no lone surrogate anywhere."""
    doc = json.loads(raw.decode("utf-8"))
    json.dumps(doc, ensure_ascii=False).encode("utf-8")  # raises on a lone surrogate
    return doc


def wait_until(condition: Callable[[], Any], what: str, limit_s: float = 30) -> Any:
    """Poll `condition` until it returns something true; fail naming `what` (not a speed check)."""
    deadline = time.monotonic() + limit_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened within {limit_s:g}s: {what}")
        time.sleep(0.2)


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0
