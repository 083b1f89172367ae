"""A real API server on 127.0.0.1 over a real FindingStore in tmp_path, with fake views."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cauditd.api import ApiContext, ApiServer, serve
from cauditd.config import ApiConfig, StoreConfig, TokenConfig
from cauditd.store import FindingStore
from tests.fakes import FakeAlerts, FakeContainers, FakeNetwork, FakeRules, FakeStats

READ_TOKEN = "read-token-0123456789abcdef"
ADMIN_TOKEN = "admin-token-0123456789abcdef"


@dataclass
class Api:
    """A running server, its context and one client session."""

    server: ApiServer
    ctx: ApiContext
    session: aiohttp.ClientSession

    @property
    def url(self) -> str:
        return self.server.url

    async def get(self, path: str, params: Any = None, token: str | None = None,
                  method: str = "GET") -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.session.request(method, self.url + path, params=params,
                                        headers=headers) as resp:
            if resp.content_type == "application/json":
                return resp.status, await resp.json()
            return resp.status, await resp.text()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[FindingStore]:
    s = FindingStore(tmp_path / "findings.db", StoreConfig(batch_ms=20))
    await s.start()
    yield s
    await s.stop()


def token_config(tmp_path: Path) -> list[TokenConfig]:
    """Token files as `make install` makes them (0600)."""
    for name, text in (("read.token", READ_TOKEN + "\n"),
                       ("admin.token", ADMIN_TOKEN + "\n# comment\n")):
        (tmp_path / name).write_text(text)
        (tmp_path / name).chmod(0o600)
    return [TokenConfig(file=str(tmp_path / "read.token"), role="read"),
            TokenConfig(file=str(tmp_path / "admin.token"), role="admin")]


ApiFactory = Callable[..., Awaitable[Api]]


@pytest.fixture
async def make_api(store: FindingStore, tmp_path: Path) -> AsyncIterator[ApiFactory]:
    """Start servers on 127.0.0.1:0 (with tokens=True: a read and an admin token)."""
    running: list[Api] = []

    async def start(tokens: bool = False, unix_socket: str = "", heartbeat_s: float = 15.0,
                    **limits: int) -> Api:
        config = ApiConfig(listen="127.0.0.1:0", unix_socket=unix_socket,
                           tokens=token_config(tmp_path) if tokens else [], **limits)
        ctx = ApiContext(store=store, rules=FakeRules(), containers=FakeContainers(),
                         stats=FakeStats(), alerts=FakeAlerts(), network=FakeNetwork(),
                         config=config, heartbeat_s=heartbeat_s)
        server = await serve(ctx)
        api = Api(server, ctx, aiohttp.ClientSession())
        running.append(api)
        return api

    yield start
    for api in running:
        await api.session.close()
        await api.server.close()


@pytest.fixture
async def api(make_api: ApiFactory) -> Api:
    return await make_api()
