"""GET /v1/findings/stream: Server-Sent Events of new findings, resumable with Last-Event-ID."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses

from aiohttp import web

from cauditd import text
from cauditd.api.context import CONTEXT
from cauditd.api.filters import finding_filter, last_event_id
from cauditd.api.limits import refused
from cauditd.findings import Finding
from cauditd.store import FindingFilter, FindingStore, FindingSubscription, Gap

CATCH_UP_PAGE = 500
RETRY_MS = 2000
STREAMS = web.AppKey("streams", set[asyncio.Task[object]])


async def stream_findings(request: web.Request) -> web.StreamResponse:
    """Send matching findings as `event: finding` with `id:` = the finding id, oldest first."""
    ctx = request.app[CONTEXT]
    streams = request.app[STREAMS]
    if len(streams) >= ctx.config.max_streams:
        return refused("streams", f"at most {ctx.config.max_streams} streams at once; "
                                  "retry later, or poll /v1/findings")
    filters = finding_filter(request.query, paged=False)
    resume_after = last_event_id(request)
    subscription = ctx.store.subscribe()
    last_sent = ctx.store.last_id if resume_after is None else resume_after
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream", "Cache-Control": "no-cache",
        "X-Accel-Buffering": "no",
    })
    task = asyncio.current_task()
    if task is not None:
        streams.add(task)
    try:
        await response.prepare(request)
        await response.write(f"retry: {RETRY_MS}\n\n".encode())
        if resume_after is not None:
            last_sent = await _catch_up(ctx.store, filters, last_sent, response)
        await _follow(ctx.store, subscription, filters, last_sent, response, ctx.heartbeat_s)
    except ConnectionError:
        pass  # the client went away
    except asyncio.CancelledError:
        # The server is shutting down (cancel_streams). The cancelled task is the connection's,
        # not only this handler's: close the connection after this response, or it would wait
        # for the client's next keep-alive request and keep the shutdown waiting with it.
        response.force_close()
    finally:
        subscription.close()
        if task is not None:
            streams.discard(task)
    return response


async def _follow(store: FindingStore, subscription: FindingSubscription, filters: FindingFilter,
                  last_sent: int, response: web.StreamResponse, heartbeat_s: float) -> None:
    """Live findings from the subscription; after a gap, read the missed ones from the store."""
    while True:
        try:
            async with asyncio.timeout(heartbeat_s):  # unlike wait_for, never loses a cancel
                item = await anext(subscription)
        except TimeoutError:
            await response.write(b": heartbeat\n\n")
            continue
        except StopAsyncIteration:
            return
        if isinstance(item, Gap):
            last_sent = await _catch_up(store, filters, last_sent, response)
        elif item.id is not None and item.id > last_sent:
            last_sent = item.id
            if filters.matches(item):
                await _send(response, item)


async def _catch_up(store: FindingStore, filters: FindingFilter, after: int,
                    response: web.StreamResponse) -> int:
    """Send stored findings with ids above `after`, oldest first; the highest id looked at."""
    await store.flush()
    while True:
        page = dataclasses.replace(filters, after_id=after, ascending=True, limit=CATCH_UP_PAGE)
        findings, _ = await store.query(page)
        for finding in findings:
            await _send(response, finding)
            after = finding.id or after
        if len(findings) < CATCH_UP_PAGE:
            return after


async def _send(response: web.StreamResponse, finding: Finding) -> None:
    data = text.json_dumps(finding.to_json(), separators=(",", ":"))
    await response.write(f"id: {finding.id}\nevent: finding\ndata: {data}\n\n".encode())


async def cancel_streams(app: web.Application) -> None:
    """on_shutdown: end open streams so the server stops promptly."""
    open_streams = app[STREAMS]
    streams = list(open_streams)
    for task in streams:
        task.cancel()
    with contextlib.suppress(Exception):
        await asyncio.gather(*streams, return_exceptions=True)
