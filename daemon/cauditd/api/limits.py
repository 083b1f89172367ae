"""What clients may take from the API: open connections, concurrent streams, request bodies.

Each limit answers with the API's JSON error shape: 503 (with Retry-After) past the connection or
stream limit, 413 for a body over the limit. Request lines and headers are bounded by aiohttp's
parser (app.MAX_REQUEST_LINE, 8190-byte header fields, 128 headers).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import stat
from collections.abc import Awaitable, Callable

from aiohttp import web

from cauditd import metrics

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
RETRY_AFTER_S = 5
# A refused connection's request is read (up to this much, for this long) before the 503 goes
# out, so the client sees the answer instead of a reset.
REFUSED_READ_BYTES = 16384
REFUSED_READ_S = 2.0
MAX_BODY = web.AppKey("max_body_bytes", int)


def refused(limit: str, detail: str) -> web.Response:
    """The 503 a client gets past `limit` ("connections" or "streams")."""
    metrics.API_REFUSED.labels(limit).inc()
    body = {"error": "too many " + limit, "detail": detail}
    return web.json_response(body, status=503, headers={"Retry-After": str(RETRY_AFTER_S)})


@web.middleware
async def limit_body(request: web.Request, handler: Handler) -> web.StreamResponse:
    """413 before the handler runs for a body over the limit, declared or chunked (the body is
    read here, within the application's client_max_size; handlers read it again from memory)."""
    if request.body_exists:
        limit = request.app[MAX_BODY]
        try:
            if (request.content_length or 0) > limit:
                raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=0)
            await request.read()
        except web.HTTPRequestEntityTooLarge:
            detail = f"request bodies are limited to {limit} bytes"
            return web.json_response({"error": "request body too large", "detail": detail},
                                     status=413, headers={"Connection": "close"})
    return await handler(request)


class _RefusedConnection(asyncio.Protocol):
    """Reads the request's head, answers 503 in JSON and closes: one connection too many."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.received = b""
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.timer = asyncio.get_running_loop().call_later(REFUSED_READ_S, self._answer)

    def data_received(self, data: bytes) -> None:
        self.received += data
        if b"\r\n\r\n" in self.received or len(self.received) >= REFUSED_READ_BYTES:
            self._answer()

    def eof_received(self) -> bool:
        self._answer()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()

    def _answer(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write(self.answer)
        self.transport.close()


def _refused_answer(limit: int) -> bytes:
    body = json.dumps({
        "error": "too many connections",
        "detail": f"the API serves at most {limit} connections at once; retry later",
    }).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nRetry-After: {RETRY_AFTER_S}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


class ConnectionLimit:
    """Protocol factory in front of aiohttp's server: past `limit` open connections, a new one
    gets a 503 and is closed. aiohttp counts a connection once its connection_made has run, after
    every socket of the same accept burst was given a protocol; the ones given one meanwhile are
    counted here (`_pending`), so a burst cannot pass the limit either."""

    def __init__(self, server: web.Server, limit: int) -> None:
        self.server = server
        self.limit = limit
        self.answer = _refused_answer(limit)
        self._pending = 0

    def __call__(self) -> asyncio.BaseProtocol:
        open_now = len(self.server.connections) + self._pending
        if open_now >= self.limit:
            metrics.API_REFUSED.labels("connections").inc()
            log.debug("API connection refused: %d open", open_now)
            return _RefusedConnection(self.answer)
        self._pending += 1
        # Runs after the burst's other sockets got their protocols, just before this one's
        # connection_made (the transport schedules it right after this callback).
        asyncio.get_running_loop().call_soon(self._registered)
        return self.server()

    def _registered(self) -> None:
        self._pending -= 1


class LimitedSite(web.BaseSite):
    """A TCP or unix-socket listener whose connections go through ConnectionLimit. A unix socket
    is made 0600: only root (or the daemon's user) may connect."""

    def __init__(self, runner: web.AppRunner, limit: int, *, host: str = "", port: int = 0,
                 path: str = "", backlog: int = 128) -> None:
        super().__init__(runner, backlog=backlog)
        self.limit = limit
        self.host, self.port, self.path = host, port, path

    @property
    def name(self) -> str:
        return f"http://unix:{self.path}:" if self.path else f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None, "runner.setup() first"
        factory = ConnectionLimit(server, self.limit)
        loop = asyncio.get_running_loop()
        if self.path:
            self._server = await loop.create_unix_server(
                factory, sock=_private_unix_socket(self.path), backlog=self._backlog
            )
        else:
            self._server = await loop.create_server(
                factory, self.host, self.port, backlog=self._backlog, reuse_address=True
            )


def _private_unix_socket(path: str) -> socket.socket:
    """A unix socket bound at `path` and made 0600 before it listens (a stale socket file is
    replaced; a missing directory is made 0750, as the unit's RuntimeDirectory would be), so no
    other user can ever connect."""
    os.makedirs(os.path.dirname(path) or ".", mode=0o750, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        os.chmod(path, 0o600)
    except OSError:
        sock.close()
        raise
    return sock
