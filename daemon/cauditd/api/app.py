"""The aiohttp application: route table, middlewares (metrics, JSON errors, auth) and `serve`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import hdrs, web

from cauditd import metrics
from cauditd.api import handlers, openapi, sse
from cauditd.api.auth import ApiConfigError, Token, allows, is_loopback, load_tokens, role_of
from cauditd.api.context import CONTEXT, ApiContext
from cauditd.api.limits import MAX_BODY, LimitedSite, limit_body
from cauditd.config import ApiConfig

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# aiohttp refuses a longer request line with a plain-text 400 before any middleware runs; the
# largest request the OpenAPI document allows must fit (a test checks it). aiohttp's default: 8190.
MAX_REQUEST_LINE = 65536
# An idle keep-alive connection is closed after this long (aiohttp's default: 75 s).
KEEPALIVE_S = 15.0


@dataclass(frozen=True, slots=True)
class Route:
    """One route: method, path pattern, handler and the role it needs (None: open)."""

    method: str
    path: str
    handler: Handler
    role: str | None


TOKENS = web.AppKey("tokens", list[Token])
ROLES = web.AppKey("roles", dict[tuple[str, str], str | None])


async def _openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi.document(tokens=bool(request.app[TOKENS])))


ROUTES = (
    Route("GET", "/v1/findings", handlers.list_findings, "read"),
    Route("GET", "/v1/findings/stream", sse.stream_findings, "read"),
    Route("GET", "/v1/findings/{id}", handlers.get_finding, "read"),
    Route("GET", "/v1/rules", handlers.list_rules, "read"),
    Route("POST", "/v1/rules/reload", handlers.reload_rules, "admin"),
    Route("GET", "/v1/containers", handlers.list_containers, "read"),
    Route("GET", "/v1/containers/{id}", handlers.get_container, "read"),
    Route("GET", "/v1/stats", handlers.get_stats, "read"),
    Route("GET", "/v1/alerts", handlers.list_alerts, "read"),
    Route("POST", "/v1/alerts/{sink}/test", handlers.test_alert, "admin"),
    Route("GET", "/v1/flows", handlers.list_flows, "read"),
    Route("GET", "/v1/dns", handlers.list_dns, "read"),
    Route("GET", "/healthz", handlers.healthz, None),
    Route("GET", "/readyz", handlers.readyz, None),
    Route("GET", "/metrics", handlers.prometheus_metrics, "read"),
    Route("GET", "/openapi.json", _openapi, None),
)


def _route_label(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


def _method_label(request: web.Request) -> str:
    """The method as a metric label: any token is a valid HTTP method, so a client could make
    one label per request; only the standard ones are kept by name."""
    return request.method if request.method in hdrs.METH_ALL else "other"


@web.middleware
async def count_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    """API_REQUESTS by route pattern (never the raw path), method and status."""
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    finally:
        metrics.API_REQUESTS.labels(_route_label(request), _method_label(request),
                                    str(status)).inc()


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error as JSON {"error", "detail"}; an unexpected exception is a logged 500."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items()
                   if k.lower() not in ("content-type", "content-length")}
        if exc.content_type == "application/json":
            return web.Response(status=exc.status, text=exc.text, headers=headers,
                                content_type="application/json")
        detail = f"{request.method} {request.path}: {exc.reason}"
        return handlers.json_response({"error": exc.reason.lower(), "detail": detail},
                                      status=exc.status, headers=headers)
    except (asyncio.CancelledError, ConnectionError):
        raise
    except Exception:
        log.exception("%s %s failed", request.method, _route_label(request))
        return handlers.error_response(500, "internal error", "see the daemon's log")


@web.middleware
async def authorize(request: web.Request, handler: Handler) -> web.StreamResponse:
    """With tokens configured: 401 without a valid bearer token, 403 for a too-low role."""
    tokens = request.app[TOKENS]
    needed = request.app[ROLES].get((request.method, _route_label(request)))
    if not tokens or needed is None or request.match_info.http_exception is not None:
        return await handler(request)
    role = role_of(tokens, request.headers.get("Authorization"))
    if role is None:
        return handlers.error_response(401, "unauthorized", "send Authorization: Bearer <token>")
    if not allows(role, needed):
        return handlers.error_response(403, "forbidden", f"this route needs the {needed} role")
    return await handler(request)


def make_app(ctx: ApiContext) -> web.Application:
    """The application; reads the token files now (ApiConfigError when one is unusable)."""
    app = web.Application(middlewares=[count_requests, json_errors, limit_body, authorize],
                          handler_args={"max_line_size": MAX_REQUEST_LINE},
                          client_max_size=ctx.config.max_body_bytes)
    app[CONTEXT] = ctx
    app[TOKENS] = load_tokens(ctx.config)
    app[MAX_BODY] = ctx.config.max_body_bytes
    app[ROLES] = {(r.method, r.path): r.role for r in ROUTES}
    app[sse.STREAMS] = set()
    for route in ROUTES:
        app.router.add_route(route.method, route.path, route.handler)
    app.on_shutdown.append(sse.cancel_streams)
    return app


def parse_listen(listen: str) -> tuple[str, int]:
    """host:port or [v6]:port; ApiConfigError when malformed."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ApiConfigError(f"api.listen {listen!r} is not host:port")
    return host.strip("[]"), int(port)


class ApiServer:
    """A running API: its bound TCP port and an async close()."""

    def __init__(self, runner: web.AppRunner, host: str, port: int, socket_path: str) -> None:
        self.runner = runner
        self.host = host
        self.port = port
        self.socket_path = socket_path

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def close(self) -> None:
        """Stop accepting, end open streams and release the sockets."""
        await self.runner.cleanup()


def check_config(config: ApiConfig) -> tuple[str, int]:
    """The listen address, after the checks that refuse a start: a malformed address, a
    non-loopback one without tokens, a token file that is missing, short or unsafe."""
    host, port = parse_listen(config.listen)
    if not config.tokens and not is_loopback(host):
        raise ApiConfigError(
            f"api.listen {config.listen!r} is not loopback and api.tokens is empty: "
            "configure tokens or listen on 127.0.0.1 / a unix socket"
        )
    for name in ("max_connections", "max_streams", "max_body_bytes"):
        if getattr(config, name) < 1:
            raise ApiConfigError(f"api.{name} must be at least 1")
    load_tokens(config)
    return host, port


async def serve(ctx: ApiContext) -> ApiServer:
    """Bind config.listen (and the unix socket) after check_config."""
    config = ctx.config
    host, port = check_config(config)
    runner = web.AppRunner(make_app(ctx), handle_signals=False, shutdown_timeout=2.0,
                           keepalive_timeout=KEEPALIVE_S)
    await runner.setup()
    try:
        await LimitedSite(runner, config.max_connections, host=host, port=port).start()
        if config.unix_socket:
            await LimitedSite(runner, config.max_connections, path=config.unix_socket).start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = _bound_port(runner, port)
    log.info("API listening on %s:%d%s", host, bound,
             f" and {config.unix_socket}" if config.unix_socket else "")
    if not config.tokens:
        log.warning("API without tokens: every local user (and any container sharing the host's "
                    "network) can read findings and reload rules; `make install` sets up tokens "
                    "(docs/security.md)")
    return ApiServer(runner, host, bound, config.unix_socket)


def _bound_port(runner: web.AppRunner, fallback: int) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple):
            return int(address[1])
    return fallback
