"""cauditctl against a live server: main(argv) with flags, env, config file and unix socket."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from cauditd import ctl
from cauditd.findings import Priority
from tests.api.conftest import ADMIN_TOKEN, READ_TOKEN, Api, ApiFactory
from tests.fakes import make_finding


async def run(*argv: str) -> int:
    """main(argv) on a thread, so the server keeps serving on this loop."""
    return await asyncio.to_thread(ctl.main, list(argv))


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("CAUDITD_URL", "CAUDITD_SOCKET", "CAUDITD_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CAUDITD_CONFIG", str(tmp_path / "absent.toml"))  # not the host's


async def seed(api: Api) -> None:
    api.ctx.store.add(make_finding("Shell in container"))
    api.ctx.store.add(make_finding("Write below etc", priority=Priority.ERROR))
    await api.ctx.store.flush()


async def test_findings_table_and_json(api: Api, capsys: pytest.CaptureFixture[str]) -> None:
    await seed(api)
    assert await run("--url", api.url, "findings") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["ID", "TIME", "(UTC)", "PRIORITY"]
    assert "Write below etc" in lines[1] and "Shell in container" in lines[2]
    assert "\033[" not in "".join(lines)  # no colour when not a terminal
    assert await run("--url", api.url, "--json", "findings", "--min-priority", "error") == 0
    docs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [d["rule"] for d in docs] == ["Write below etc"]


async def test_findings_follow(api: Api, capsys: pytest.CaptureFixture[str]) -> None:
    await seed(api)
    api.ctx.store.add(make_finding("later"))
    await api.ctx.store.flush()
    follower = asyncio.create_task(run("--url", api.url, "--json", "findings", "--follow",
                                       "--rule", "later", "--count", "2"))
    printed = ""
    while "later" not in printed:  # the first page is out: what follows comes from the stream
        await asyncio.sleep(0.02)
        printed += capsys.readouterr().out
        assert not follower.done()
    for rule in ("noise", "later", "noise", "later"):
        api.ctx.store.add(make_finding(rule))
    assert await asyncio.wait_for(follower, 30) == 0
    printed += capsys.readouterr().out
    docs = [json.loads(line) for line in printed.splitlines()]
    assert [(d["rule"], d["id"]) for d in docs] == [("later", 3), ("later", 5), ("later", 7)]


async def test_env_token_and_roles(make_api: ApiFactory, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    api = await make_api(tokens=True)
    monkeypatch.setenv("CAUDITD_URL", api.url)
    assert await run("rules", "list") == ctl.EXIT_API_ERROR
    assert "unauthorized" in capsys.readouterr().err
    monkeypatch.setenv("CAUDITD_TOKEN_FILE", str(tmp_path / "read.token"))
    assert await run("rules", "list") == 0
    assert "Terminal shell in container" in capsys.readouterr().out
    assert await run("rules", "reload") == ctl.EXIT_API_ERROR
    assert "forbidden" in capsys.readouterr().err
    assert await run("--token-file", str(tmp_path / "admin.token"), "rules", "reload") == 0
    assert "rules reloaded" in capsys.readouterr().out
    assert READ_TOKEN not in capsys.readouterr().out + ADMIN_TOKEN


async def test_config_file_and_unix_socket(make_api: ApiFactory, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    sock = tmp_path / "api.sock"
    api = await make_api(unix_socket=str(sock))
    await seed(api)
    config = tmp_path / "home" / ".config" / "cauditctl.toml"
    config.parent.mkdir(parents=True)
    config.write_text(f'socket = "{sock}"\n')
    assert await run("containers") == 0
    out = capsys.readouterr().out
    assert "web" in out and "SHORT_ID" in out
    assert await run("status") == 0
    assert "daemon: ready" in capsys.readouterr().out


async def test_reload_refused_lists_errors(api: Api, capsys: pytest.CaptureFixture[str]) -> None:
    api.ctx.rules.reload_errors = ["a.toml:1: bad"]  # type: ignore[attr-defined]
    assert await run("--url", api.url, "rules", "reload") == ctl.EXIT_API_ERROR
    assert "a.toml:1: bad" in capsys.readouterr().out


async def test_alerts_flows_dns(api: Api, capsys: pytest.CaptureFixture[str]) -> None:
    assert await run("--url", api.url, "alerts") == 0
    assert "ops-slack" in capsys.readouterr().out
    assert await run("--url", api.url, "alerts", "test", "ops-slack") == 0
    assert '"outcome": "ok"' in capsys.readouterr().out
    assert await run("--url", api.url, "alerts", "test", "nope") == ctl.EXIT_API_ERROR
    assert await run("--url", api.url, "flows", "--port", "443") == 0
    assert "10.0.0.5" in capsys.readouterr().out
    assert await run("--url", api.url, "dns", "--peer", "not-an-ip") == ctl.EXIT_API_ERROR
    assert "peer" in capsys.readouterr().err


async def test_bad_filter_is_reported(api: Api, capsys: pytest.CaptureFixture[str]) -> None:
    assert await run("--url", api.url, "findings", "--since", "yesterday") == ctl.EXIT_API_ERROR
    assert "since" in capsys.readouterr().err


async def test_unreachable(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert await run("--socket", str(tmp_path / "none.sock"), "status") == ctl.EXIT_UNREACHABLE
    assert "cannot reach" in capsys.readouterr().err


def test_rules_check_runs_the_local_checker(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[[rule]]\nname = 3\n")
    assert ctl.main(["rules", "check", str(bad)]) == ctl.EXIT_API_ERROR
    assert "bad.toml" in capsys.readouterr().out


def test_help_is_readable(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        ctl.main(["--help"])
    text = capsys.readouterr().out
    for command in ("findings", "rules", "containers", "status", "alerts", "flows", "dns"):
        assert command in text


def daemon_config(tmp_path: Path, listen: str, unix_socket: str = "",
                  roles: tuple[str, ...] = ("read", "admin")) -> Path:
    """A daemon config like `make install` writes: its listen address and token files."""
    tokens = "".join(f'[[api.tokens]]\nfile = "{tmp_path / role}.token"\nrole = "{role}"\n'
                     for role in roles)
    path = tmp_path / "cauditd.toml"
    path.write_text(f'[api]\nlisten = "{listen}"\nunix_socket = "{unix_socket}"\n{tokens}')
    return path


async def test_finds_address_and_tokens_in_the_daemons_config(
    make_api: ApiFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    api = await make_api(tokens=True)
    listen = f"{api.server.host}:{api.server.port}"
    monkeypatch.setenv("CAUDITD_CONFIG", str(daemon_config(tmp_path, listen)))
    assert await run("rules", "list") == 0
    assert "Terminal shell in container" in capsys.readouterr().out
    assert await run("rules", "reload") == 0, capsys.readouterr().err  # a POST: the admin token
    monkeypatch.setenv("CAUDITD_CONFIG", str(daemon_config(tmp_path, listen, roles=("read",))))
    assert await run("rules", "reload") == ctl.EXIT_API_ERROR
    assert "forbidden" in capsys.readouterr().err
    (tmp_path / "read.token").chmod(0o000)
    monkeypatch.setenv("CAUDITD_CONFIG", str(daemon_config(tmp_path, listen, roles=("admin",))))
    assert await run("status") == 0, "reads fall back to the admin token"
    for role in ("read", "admin"):
        (tmp_path / f"{role}.token").unlink()
    assert await run("status") == ctl.EXIT_API_ERROR
    assert "no token: pass --token-file" in capsys.readouterr().err


async def test_prefers_the_daemons_unix_socket(make_api: ApiFactory, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    sock = tmp_path / "api.sock"
    await make_api(unix_socket=str(sock))
    config = daemon_config(tmp_path, "127.0.0.1:1", unix_socket=str(sock), roles=())
    monkeypatch.setenv("CAUDITD_CONFIG", str(config))
    assert await run("status") == 0, capsys.readouterr().err
    assert "daemon: ready" in capsys.readouterr().out


def test_admin_routes_are_exactly_the_posts() -> None:
    """cauditctl sends the admin token with POSTs only: the route table must keep that true."""
    from cauditd.api import ROUTES

    assert {(r.method, r.path) for r in ROUTES if r.role == "admin"} == {
        (r.method, r.path) for r in ROUTES if r.method == "POST"
    }
