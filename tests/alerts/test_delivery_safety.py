"""Where findings may go: redirects are never followed, webhook URL files other users could read
or change are refused."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from cauditd.alerts.sinks import make_sink
from cauditd.config import SinkConfig
from tests.alerts.conftest import Daemon, eventually, finding, sink


class Redirector:
    """A local receiver whose /hook answers with a redirect to /elsewhere, which records."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.hook_hits = 0
        self.elsewhere_hits = 0
        app = web.Application()
        app.router.add_post("/hook", self.hook)
        app.router.add_route("*", "/elsewhere", self.elsewhere)
        self.server = TestServer(app, host="127.0.0.1")

    async def hook(self, request: web.Request) -> web.Response:
        self.hook_hits += 1
        location = str(request.url.with_path("/elsewhere").with_query(secret="s3cr3t"))
        return web.Response(status=self.status, headers={"Location": location})

    async def elsewhere(self, request: web.Request) -> web.Response:
        self.elsewhere_hits += 1
        return web.Response(status=200)


@pytest.fixture(params=[301, 302, 303, 307, 308])
async def redirector(request: pytest.FixtureRequest) -> AsyncIterator[Redirector]:
    receiver = Redirector(request.param)
    await receiver.server.start_server()
    yield receiver
    await receiver.server.close()


async def test_redirect_is_a_permanent_failure_never_followed(
    redirector: Redirector, daemon_factory: Callable[..., Daemon]
) -> None:
    url = str(redirector.server.make_url("/hook"))
    daemon = daemon_factory([sink("hook", "webhook", url)])
    await daemon.start()
    daemon.add(finding())
    await eventually(lambda: daemon.status("hook")["failed"] == 1, "the delivery to fail")
    status = daemon.status("hook")
    assert redirector.hook_hits == 1, "a redirect is not retried"
    assert redirector.elsewhere_hits == 0, "the redirect was followed"
    assert status["delivered"] == 0 and status["retries"] == 0
    error = status["last_error"]
    assert error.startswith(f"HTTP {redirector.status}: redirect to http://127.0.0.1 not followed")
    assert "s3cr3t" not in error and "/elsewhere" not in error


@pytest.mark.parametrize(("mode", "owner", "match"), [
    (0o644, 0, "mode 0644, readable or writable by others"),
    (0o660, 0, "mode 0660"),
    (0o600, 65534, "owned by uid 65534"),
])
def test_unsafe_url_file_is_refused(tmp_path: Path, mode: int, owner: int, match: str) -> None:
    path = tmp_path / "slack-url"
    path.write_text("https://hooks.slack.example/services/T0/B0/secret\n")
    path.chmod(mode)
    os.chown(path, owner, owner)
    config = SinkConfig(name="oncall", kind="slack", url_file=str(path))
    with pytest.raises(ValueError, match=f"sink oncall: {path}: refusing .*{match}"):
        make_sink(config)
    path.chmod(0o600)
    os.chown(path, 0, 0)
    assert make_sink(config).name == "oncall"
