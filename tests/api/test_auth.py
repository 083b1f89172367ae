"""Bearer tokens per role: 401 without a valid token, 403 for a read token on admin routes."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from cauditd.api import ApiConfigError, make_app
from cauditd.config import ApiConfig, TokenConfig
from tests.api.conftest import ADMIN_TOKEN, READ_TOKEN, Api, ApiFactory

READ_ROUTES = ["/v1/findings", "/v1/rules", "/v1/containers", "/v1/stats", "/v1/alerts",
               "/v1/flows", "/v1/dns", "/metrics"]
ADMIN_ROUTES = ["/v1/rules/reload", "/v1/alerts/ops-slack/test"]
OPEN_ROUTES = ["/healthz", "/readyz", "/openapi.json"]


@pytest.fixture
async def secured(make_api: ApiFactory) -> Api:
    return await make_api(tokens=True)


@pytest.mark.parametrize("path", READ_ROUTES)
@pytest.mark.parametrize(("token", "status"), [
    (None, 401), ("wrong-token-0123456789abcdef", 401), (READ_TOKEN[:-1], 401),
    (READ_TOKEN, 200), (ADMIN_TOKEN, 200),
])
async def test_read_routes(secured: Api, path: str, token: str | None, status: int) -> None:
    got, body = await secured.get(path, token=token)
    assert got == status
    if status == 401:
        assert body["error"] == "unauthorized" and READ_TOKEN not in str(body)


@pytest.mark.parametrize("path", ADMIN_ROUTES)
@pytest.mark.parametrize(("token", "status"), [(None, 401), (READ_TOKEN, 403), (ADMIN_TOKEN, 200)])
async def test_admin_routes(secured: Api, path: str, token: str | None, status: int) -> None:
    got, body = await secured.get(path, token=token, method="POST")
    assert got == status, body
    if status == 403:
        assert body["error"] == "forbidden"


@pytest.mark.parametrize("path", OPEN_ROUTES)
async def test_open_routes(secured: Api, path: str) -> None:
    assert (await secured.get(path))[0] == 200


async def test_other_schemes_and_garbage_rejected(secured: Api) -> None:
    for header in (f"Basic {READ_TOKEN}", f"bearer{READ_TOKEN}", "Bearer ", "Bearer \xff"):
        async with secured.session.get(secured.url + "/v1/stats",
                                       headers={"Authorization": header}) as resp:
            assert resp.status == 401


async def test_token_values_never_logged(secured: Api, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    await secured.get("/v1/stats", token=READ_TOKEN)
    await secured.get("/v1/stats", token="wrong-token-0123456789abcdef")
    await secured.get("/v1/rules/reload", token=READ_TOKEN, method="POST")
    assert READ_TOKEN not in caplog.text and "wrong-token" not in caplog.text


@pytest.mark.parametrize(("content", "role", "match"), [
    (None, "read", "cannot read"), ("", "read", "16"), ("short", "read", "16"),
    (READ_TOKEN, "root", "role"),
])
def test_unusable_token_config(api: Api, tmp_path: Path, content: str | None, role: str,
                               match: str) -> None:
    path = tmp_path / "t.token"
    if content is not None:
        path.write_text(content)
        path.chmod(0o600)
    ctx = api.ctx
    ctx.config = ApiConfig(tokens=[TokenConfig(file=str(path), role=role)])
    with pytest.raises(ApiConfigError, match=match):
        make_app(ctx)


@pytest.mark.parametrize(("mode", "owner", "match"), [
    (0o644, 0, r"mode 0644, readable or writable by others \(chmod 0640"),
    (0o620, 0, "mode 0620"), (0o602, 0, "mode 0602"),
    (0o600, 65534, "owned by uid 65534"),
])
def test_unsafe_token_file_refused(api: Api, tmp_path: Path, mode: int, owner: int,
                                   match: str) -> None:
    """A token another user could read or replace is refused, naming the file and the fix."""
    path = tmp_path / "t.token"
    path.write_text(READ_TOKEN)
    path.chmod(mode)
    os.chown(path, owner, owner)
    api.ctx.config = ApiConfig(tokens=[TokenConfig(file=str(path), role="read")])
    with pytest.raises(ApiConfigError, match=match) as caught:
        make_app(api.ctx)
    assert str(path) in str(caught.value)


def test_group_readable_token_file_is_accepted(api: Api, tmp_path: Path) -> None:
    path = tmp_path / "t.token"
    path.write_text(READ_TOKEN)
    path.chmod(0o640)
    api.ctx.config = ApiConfig(tokens=[TokenConfig(file=str(path), role="read")])
    make_app(api.ctx)
