"""What one client may take: connections, streams and request bodies are bounded, and every refusal
is a JSON error a client can act on (503 with Retry-After, 413)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import stat
from pathlib import Path

import aiohttp
import pytest

from cauditd import metrics
from tests.api.conftest import Api, ApiFactory


def refused_count(limit: str) -> float:
    return metrics.REGISTRY.get_sample_value("cauditd_api_refused_total", {"limit": limit}) or 0.0


async def raw_get(api: Api, path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    """A keep-alive connection that has had one answer; returns it with that answer's head."""
    reader, writer = await asyncio.open_connection(api.server.host, api.server.port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    return reader, writer, head


def status_and_body(answer: bytes) -> tuple[int, dict[str, object], str]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    return int(lines[0].split()[1]), json.loads(body), "\n".join(lines[1:])


async def test_connections_past_the_limit_get_503_then_room_again(make_api: ApiFactory) -> None:
    api = await make_api(max_connections=3)
    held = [await raw_get(api, "/healthz") for _ in range(3)]
    before = refused_count("connections")
    reader, writer = await asyncio.open_connection(api.server.host, api.server.port)
    writer.write(b"GET /v1/stats HTTP/1.1\r\nHost: x\r\n\r\n")
    status, body, headers = status_and_body(await asyncio.wait_for(reader.read(), 5))
    assert status == 503 and body["error"] == "too many connections"
    assert "at most 3 connections" in str(body["detail"])
    assert "Retry-After: 5" in headers and "Connection: close" in headers
    assert refused_count("connections") == before + 1
    writer.close()
    for _, held_writer, _ in held:
        held_writer.close()
        await held_writer.wait_closed()
    await asyncio.sleep(0.1)
    assert (await api.get("/v1/stats"))[0] == 200


async def test_a_burst_of_connections_cannot_pass_the_limit(make_api: ApiFactory) -> None:
    """Ten sockets waiting in the accept backlog at once: the loop accepts them in one burst."""
    api = await make_api(max_connections=3)
    burst = [socket.create_connection((api.server.host, api.server.port)) for _ in range(10)]
    streams = [await asyncio.open_connection(sock=sock) for sock in burst]
    for _, writer in streams:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    heads = [await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5) for reader, _ in streams]
    statuses = sorted(int(head.split()[1]) for head in heads)
    assert statuses == [200] * 3 + [503] * 7
    for _, writer in streams:
        writer.close()


async def test_streams_past_the_limit_get_503(make_api: ApiFactory) -> None:
    api = await make_api(max_streams=2, heartbeat_s=0.2)  # a gone client is seen at a write
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    url = api.url + "/v1/findings/stream"
    open_streams = [await api.session.get(url, timeout=timeout) for _ in range(2)]
    assert [s.status for s in open_streams] == [200, 200]
    status, body = await api.get("/v1/findings/stream")
    assert status == 503 and body["error"] == "too many streams"
    assert "at most 2 streams" in body["detail"]
    open_streams[0].close()
    for _ in range(50):
        await asyncio.sleep(0.05)
        async with api.session.get(url, timeout=timeout) as third:
            if third.status == 200:
                break
    assert third.status == 200
    open_streams[1].close()


@pytest.mark.parametrize("chunked", [False, True])
async def test_body_over_the_limit_is_413(make_api: ApiFactory, chunked: bool) -> None:
    api = await make_api(max_body_bytes=1024)

    async def chunks(size: int):  # type: ignore[no-untyped-def]
        yield b"x" * size

    for size, expected in ((1024, 200), (1025, 413)):
        data = chunks(size) if chunked else b"x" * size
        async with api.session.post(api.url + "/v1/rules/reload", data=data) as resp:
            assert resp.status == expected, await resp.text()
            if expected == 413:
                body = await resp.json()
                assert body == {"error": "request body too large",
                                "detail": "request bodies are limited to 1024 bytes"}


async def test_unix_socket_is_private(make_api: ApiFactory, tmp_path: Path) -> None:
    path = tmp_path / "api.sock"
    path.touch()  # a stale file where the socket goes is not a socket: refused, not replaced
    with pytest.raises(OSError):
        await make_api(unix_socket=str(path))
    path.unlink()
    await make_api(unix_socket=str(path))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    missing_dir = tmp_path / "run" / "api.sock"  # `make run` with the installed config
    await make_api(unix_socket=str(missing_dir))
    assert stat.S_IMODE(os.stat(missing_dir.parent).st_mode) == 0o750
    connector = aiohttp.UnixConnector(path=str(path))
    async with aiohttp.ClientSession(connector=connector) as session, \
            session.get("http://localhost/healthz") as resp:
        assert resp.status == 200


async def test_open_api_says_so_at_start(make_api: ApiFactory,
                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "cauditd.api")
    await make_api(tokens=True)
    assert "without tokens" not in caplog.text
    await make_api()
    assert "API without tokens: every local user" in caplog.text
