"""The other routes, bad input on every parameter, errors as JSON, /metrics through promtool."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
from pathlib import Path

import aiohttp
import pytest

from cauditd.api import ApiConfigError, serve
from cauditd.config import ApiConfig
from tests.api.conftest import Api, ApiFactory
from tests.fakes import FULL_ID_A, make_finding

BAD_FINDING_PARAMS = [
    ("since", "yesterday"), ("since", "15x"), ("since", "2024-13-45T00:00:00Z"), ("since", ""),
    ("until", "soon"), ("until", "-5m"),
    ("min_priority", "urgent"), ("min_priority", "4"),
    ("rule", ""), ("rule", "x" * 300), ("tag", "\x01"), ("container", ""), ("source", ""),
    ("limit", "0"), ("limit", "1001"), ("limit", "ten"), ("limit", "-1"),
    ("cursor", "not-a-cursor"), ("cursor", ""),
    ("colour", "red"),
]


@pytest.mark.parametrize(("name", "value"), BAD_FINDING_PARAMS)
@pytest.mark.parametrize("path", ["/v1/findings", "/v1/findings/stream"])
async def test_bad_finding_parameter_is_a_400_naming_it(api: Api, path: str, name: str,
                                                       value: str) -> None:
    status, body = await api.get(path, {name: value})
    assert status == 400
    assert body["parameter"] == name and name in body["error"] and body["detail"]


@pytest.mark.parametrize(("name", "value"), [
    ("container", ""), ("since", "later"), ("peer", "10.0.0.300"), ("peer", "example.com"),
    ("port", "70000"), ("port", "0"), ("port", "http"), ("name", ""), ("limit", "5000"),
    ("vlan", "3"),
])
@pytest.mark.parametrize("path", ["/v1/flows", "/v1/dns"])
async def test_bad_network_parameter_is_a_400_naming_it(api: Api, path: str, name: str,
                                                       value: str) -> None:
    status, body = await api.get(path, {name: value})
    assert status == 400 and body["parameter"] == name


@pytest.mark.parametrize(("path", "name"), [
    ("/v1/findings/abc", "id"), ("/v1/findings/0", "id"),
    ("/v1/findings/99999999999999999999", "id"),
    ("/v1/findings/stream?since=1d&since=2d", "since"),
    ("/v1/rules?verbose=1", "verbose"),
])
async def test_bad_path_and_repeated_parameters(api: Api, path: str, name: str) -> None:
    status, body = await api.get(path)
    assert status == 400 and body["parameter"] == name


async def test_bad_last_event_id_header(api: Api) -> None:
    async with api.session.get(api.url + "/v1/findings/stream",
                               headers={"Last-Event-ID": "seven"}) as resp:
        assert resp.status == 400 and (await resp.json())["parameter"] == "Last-Event-ID"


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/v2/nothing", 404), ("GET", "/v1/findingz", 404), ("DELETE", "/v1/findings", 405),
    ("GET", "/v1/rules/reload", 405),
])
async def test_unknown_routes_and_methods_are_json(api: Api, method: str, path: str,
                                                   status: int) -> None:
    got, body = await api.get(path, method=method)
    assert got == status and set(body) >= {"error", "detail"}


async def test_rules_and_reload(api: Api) -> None:
    status, body = await api.get("/v1/rules")
    assert status == 200 and body["rules"][0]["name"] == "Terminal shell in container"
    status, body = await api.get("/v1/rules/reload", method="POST")
    assert status == 200 and body == {"reloaded": True, "errors": []}
    api.ctx.rules.reload_errors = ["rules/x.toml:3: unknown field 'proc.nme'"]  # type: ignore[attr-defined]
    status, body = await api.get("/v1/rules/reload", method="POST")
    assert status == 422 and body["errors"] == ["rules/x.toml:3: unknown field 'proc.nme'"]


async def test_containers_with_counts_and_recent_findings(api: Api) -> None:
    for _ in range(3):
        api.ctx.store.add(make_finding())
    gone = api.ctx.store.add(make_finding(full_id="c3" * 32, name="gone"))
    await api.ctx.store.flush()
    status, body = await api.get("/v1/containers")
    assert status == 200
    web = next(c for c in body["containers"] if c["name"] == "web")
    assert web["findings"] == 3
    for key in (FULL_ID_A, FULL_ID_A[:12], "web"):
        status, one = await api.get(f"/v1/containers/{key}")
        assert status == 200 and one["findings"] == 3 and len(one["recent_findings"]) == 3
    status, one = await api.get("/v1/containers/gone")  # exited, but has findings
    assert status == 200 and one["recent_findings"][0]["id"] == gone.id
    status, body = await api.get("/v1/containers/nosuch")
    assert status == 404


async def test_stats_health_ready(api: Api) -> None:
    assert (await api.get("/v1/stats"))[1]["uptime_s"] == 12.5
    assert await api.get("/healthz") == (200, {"status": "ok"})
    assert await api.get("/readyz") == (200, {"status": "ready"})
    api.ctx.stats.is_ready = False  # type: ignore[attr-defined]
    status, body = await api.get("/readyz")
    assert status == 503 and body["error"] == "not ready"


async def test_alerts_list_and_test(api: Api) -> None:
    status, body = await api.get("/v1/alerts")
    assert status == 200 and body["sinks"][0]["name"] == "ops-slack"
    assert (await api.get("/v1/alerts/ops-slack/test", method="POST"))[0] == 200
    assert api.ctx.alerts.tested == ["ops-slack"]  # type: ignore[attr-defined]
    assert (await api.get("/v1/alerts/nope/test", method="POST"))[0] == 404


async def test_flows_and_dns_pass_filters(api: Api) -> None:
    status, body = await api.get("/v1/flows", {"container": "web", "peer": "10.0.0.5",
                                               "port": "443", "since": "5m"})
    assert status == 200 and body["flows"][0]["port"] == 443
    asked = api.ctx.network.asked[-1]  # type: ignore[attr-defined]
    assert (asked.container, asked.peer, asked.port) == ("web", "10.0.0.5/32", 443)
    assert asked.since_ns is not None
    status, body = await api.get("/v1/dns", {"name": "example.test", "peer": "10.0.0.0/8"})
    assert status == 200 and body["dns"][0]["name"] == "example.test"
    assert api.ctx.network.asked[-1].name == "example.test"  # type: ignore[attr-defined]


async def test_metrics_count_routes_by_pattern_and_pass_promtool(api: Api) -> None:
    await api.get("/v1/findings/12345")
    await api.get("/v1/findings/12346")
    async with api.session.get(api.url + "/metrics") as resp:
        assert resp.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        text = await resp.text()
    assert 'route="/v1/findings/{id}"' in text and "/v1/findings/12345" not in text
    assert "process_resident_memory_bytes" in text
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool missing (apt-get install prometheus)")
    proc = await asyncio.create_subprocess_exec(
        promtool, "check", "metrics", stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate(text.encode())
    assert proc.returncode == 0, out.decode()


async def test_openapi_served(api: Api) -> None:
    status, body = await api.get("/openapi.json")
    assert status == 200 and body["openapi"].startswith("3.")


async def test_refuses_non_loopback_without_tokens(api: Api) -> None:
    ctx = dataclasses.replace(api.ctx, config=ApiConfig(listen="0.0.0.0:0"))
    with pytest.raises(ApiConfigError, match="loopback"):
        await serve(ctx)


async def test_unix_socket(make_api: ApiFactory, tmp_path: Path) -> None:
    sock = str(tmp_path / "api.sock")
    await make_api(unix_socket=sock)
    connector = aiohttp.UnixConnector(path=sock)
    async with aiohttp.ClientSession(connector=connector) as session, \
            session.get("http://localhost/healthz") as resp:
        assert resp.status == 200
