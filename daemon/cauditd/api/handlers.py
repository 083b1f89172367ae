"""Route handlers of the JSON API: each reads the context, checks its input and answers JSON."""

from __future__ import annotations

import functools
from typing import Any

from aiohttp import web
from prometheus_client import generate_latest

from cauditd import metrics, text
from cauditd.api.context import CONTEXT
from cauditd.api.filters import (
    CONTAINER,
    FINDING_ID,
    SINK,
    bad_parameter,
    finding_filter,
    network_filter,
)
from cauditd.store import FindingFilter

METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Every JSON answer: valid whatever bytes a container put in its strings (cauditd.text).
json_response = functools.partial(web.json_response, dumps=text.json_dumps)
RECENT_FINDINGS = 10


def error_response(status: int, error: str, detail: str, **extra: Any) -> web.Response:
    """The JSON error body every failure uses."""
    return json_response({"error": error, "detail": detail, **extra}, status=status)


def not_found(detail: str) -> web.HTTPNotFound:
    body = text.json_dumps({"error": "not found", "detail": detail})
    return web.HTTPNotFound(text=body, content_type="application/json")


def _no_query(request: web.Request) -> None:
    for key in request.query:
        raise bad_parameter(key, "this route takes no parameters")


async def list_findings(request: web.Request) -> web.Response:
    store = request.app[CONTEXT].store
    findings, cursor = await store.query(finding_filter(request.query))
    return json_response(
        {"findings": [f.to_json() for f in findings], "next_cursor": cursor}
    )


async def get_finding(request: web.Request) -> web.Response:
    _no_query(request)
    finding_id = FINDING_ID.check("id", request.match_info["id"])
    finding = await request.app[CONTEXT].store.get(finding_id)
    if finding is None:
        raise not_found(f"no finding {finding_id}")
    return json_response(finding.to_json())


async def list_rules(request: web.Request) -> web.Response:
    _no_query(request)
    return json_response({"rules": request.app[CONTEXT].rules.rules_info()})


async def reload_rules(request: web.Request) -> web.Response:
    _no_query(request)
    errors = await request.app[CONTEXT].rules.reload()
    if errors:
        detail = f"{len(errors)} error(s); the running rule set is unchanged"
        return error_response(422, "rule set refused", detail, errors=errors)
    return json_response({"reloaded": True, "errors": []})


async def list_containers(request: web.Request) -> web.Response:
    _no_query(request)
    ctx = request.app[CONTEXT]
    counts = await ctx.store.counts_by_container()
    by_id = {c["full_id"]: c for c in counts} | {c["id"]: c for c in counts}
    containers = []
    for info in ctx.containers.containers():
        count = by_id.get(str(info.get("id", "")))
        containers.append({**info, "findings": count["findings"] if count else 0,
                           "last_finding": count["last_time"] if count else None})
    return json_response({"containers": containers, "findings_by_container": counts})


async def get_container(request: web.Request) -> web.Response:
    _no_query(request)
    ctx = request.app[CONTEXT]
    key = CONTAINER.check("id", request.match_info["id"])
    info = ctx.containers.container(key)
    ids = (key,) if info is None else (str(info.get("id", key)),)
    recent, _ = await ctx.store.query(FindingFilter(containers=ids, limit=RECENT_FINDINGS))
    if info is None and not recent:
        raise not_found(f"no container {key!r} is tracked or has findings")
    counts = [c for c in await ctx.store.counts_by_container()
              if ids[0] in (c["full_id"], c["id"], c["name"])]
    return json_response({
        "container": info if info is not None else {"id": recent[0].container.full_id,
                                                    "name": recent[0].container.name,
                                                    "running": False},
        "findings": sum(c["findings"] for c in counts),
        "recent_findings": [f.to_json() for f in recent],
    })


async def get_stats(request: web.Request) -> web.Response:
    _no_query(request)
    return json_response(request.app[CONTEXT].stats.stats())


async def list_alerts(request: web.Request) -> web.Response:
    _no_query(request)
    return json_response({"sinks": request.app[CONTEXT].alerts.status()})


async def test_alert(request: web.Request) -> web.Response:
    _no_query(request)
    sink = SINK.check("sink", request.match_info["sink"])
    try:
        result = await request.app[CONTEXT].alerts.send_test(sink)
    except KeyError:
        raise not_found(f"no alert sink {sink!r}") from None
    return json_response(result)


async def list_flows(request: web.Request) -> web.Response:
    filters = network_filter(request.query)
    return json_response({"flows": request.app[CONTEXT].network.flows(filters)})


async def list_dns(request: web.Request) -> web.Response:
    filters = network_filter(request.query)
    return json_response({"dns": request.app[CONTEXT].network.dns(filters)})


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    if not context.stats.ready():
        return error_response(503, "not ready", "the probes are not attached yet")
    problem = context.store.problem
    if problem:  # still detecting and alerting, but findings are not reaching the disk
        return error_response(503, "degraded", problem)
    return json_response({"status": "ready"})


async def prometheus_metrics(request: web.Request) -> web.Response:
    body = generate_latest(metrics.REGISTRY)
    return web.Response(body=body, headers={"Content-Type": METRICS_CONTENT_TYPE})
