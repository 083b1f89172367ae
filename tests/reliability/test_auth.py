"""Auth against the real daemon (`cauditd run`, probes attached, log at debug): every route of the
route table without a token, with a wrong one, with the read token and with the admin token; a
start that would expose the API or trust files another user could change is refused; and no token
value, right or wrong, reaches any line of the log.
"""

from __future__ import annotations

import http.client
import secrets
import subprocess
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cauditd.api import ROUTES
from cauditd.api.app import Route
from tests.harness import CAUDITD, DaemonProcess, write_config

WRONG = secrets.token_urlsafe(32)


@dataclass
class Secured:
    daemon: DaemonProcess
    tokens: dict[str, str]

    def status(self, method: str, path: str, token: str | None) -> int:
        """The status of one request; a stream is closed as soon as its head arrives."""
        address = urllib.parse.urlsplit(self.daemon.api_url)
        conn = http.client.HTTPConnection(address.hostname, address.port, timeout=20)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            conn.request(method, path, headers=headers)
            return conn.getresponse().status
        finally:
            conn.close()


def token_files(tmp_path: Path) -> tuple[dict[str, str], str]:
    tokens = {role: secrets.token_urlsafe(32) for role in ("read", "admin")}
    config = ""
    for role, value in tokens.items():
        path = tmp_path / f"{role}.token"
        path.write_text(value + "\n")
        path.chmod(0o600)
        config += f'[[api.tokens]]\nfile = "{path}"\nrole = "{role}"\n'
    return tokens, config


@pytest.fixture(scope="module")
def secured(ebpf: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    tmp_path = tmp_path_factory.mktemp("auth")
    tokens, extra = token_files(tmp_path)
    config = write_config(tmp_path / "c.toml", tmp_path / "state", extra)
    daemon = DaemonProcess(config)
    try:
        daemon.wait_ready(timeout=120)
        yield Secured(daemon, tokens)
    finally:
        daemon.stop()


def concrete(path: str) -> str:
    """A route pattern with its parameters filled in (ids that need not exist)."""
    return path.replace("{id}", "1").replace("{sink}", "no-such-sink")


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_every_route_with_every_token(secured: Secured, route: Route) -> None:
    method, path, role = route.method, concrete(route.path), route.role
    read, admin = secured.tokens["read"], secured.tokens["admin"]
    got = {who: secured.status(method, path, token)
           for who, token in (("none", None), ("wrong", WRONG), ("read", read), ("admin", admin))}
    if role is None:
        assert all(status not in (401, 403) for status in got.values()), got
    elif role == "read":
        assert got["none"] == got["wrong"] == 401, got
        assert got["read"] not in (401, 403) and got["admin"] not in (401, 403), got
    else:
        assert (got["none"], got["wrong"], got["read"]) == (401, 401, 403), got
        assert got["admin"] not in (401, 403), got


def test_no_token_in_any_log_line(secured: Secured) -> None:
    """Runs last in this module: everything above went through the debug log."""
    for token in (*secured.tokens.values(), WRONG):
        secured.status("GET", "/v1/stats", token)
    secured.daemon.stop()
    secured.daemon._reader.join(timeout=10)
    lines = secured.daemon.lines
    assert any(line.startswith("DEBUG ") for line in lines), "the daemon did not log at debug"
    assert any("/v1/stats" in line for line in lines), "requests were not in the access log"
    for token in (*secured.tokens.values(), WRONG):
        leaked = [line for line in lines if token in line or token[8:24] in line]
        assert not leaked, leaked[:3]


def refused_start(config: Path) -> subprocess.CompletedProcess[str]:
    """`cauditd run` with a config it must refuse before loading any probe."""
    result = subprocess.run([*CAUDITD, "run", "--config", str(config)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode != 0, result.stderr[-2000:]
    assert "syscall probes attached" not in result.stderr, "refused only after the probes loaded"
    return result


def test_non_loopback_listen_without_tokens_is_refused(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", tmp_path / "state")
    config.write_text(config.read_text().replace('listen = "127.0.0.1:0"', 'listen = "0.0.0.0:0"'))
    result = refused_start(config)
    assert "api.listen '0.0.0.0:0' is not loopback and api.tokens is empty" in result.stderr


@pytest.mark.parametrize(("what", "mode"), [("config", 0o666), ("read.token", 0o644),
                                            ("admin.token", 0o620)])
def test_files_another_user_could_change_are_refused_at_start(tmp_path: Path, what: str,
                                                              mode: int) -> None:
    _, extra = token_files(tmp_path)
    config = write_config(tmp_path / "c.toml", tmp_path / "state", extra)
    (config if what == "config" else tmp_path / what).chmod(mode)
    result = refused_start(config)
    assert f"mode {mode:04o}" in result.stderr and "refusing" in result.stderr, result.stderr
