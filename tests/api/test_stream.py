"""GET /v1/findings/stream: live events, filters, heartbeats, reconnect with Last-Event-ID."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import aiohttp

from cauditd.findings import Priority
from tests.api.conftest import Api, ApiFactory
from tests.fakes import make_finding


@dataclass
class Event:
    id: int | None
    event: str
    data: dict[str, Any] | None
    comment: str = ""


async def read_event(resp: aiohttp.ClientResponse) -> Event:
    """The next event (or comment block) of an SSE stream."""
    fields: dict[str, str] = {}
    comment = ""
    while True:
        line = (await asyncio.wait_for(resp.content.readline(), 10)).decode()
        if line in ("\n", ""):
            if fields or comment:
                break
            continue
        if line.startswith(":"):
            comment = line[1:].strip()
            continue
        key, _, value = line.rstrip("\n").partition(": ")
        fields[key] = value
    return Event(
        id=int(fields["id"]) if "id" in fields else None, event=fields.get("event", ""),
        data=json.loads(fields["data"]) if "data" in fields else None, comment=comment,
    )


async def next_finding(resp: aiohttp.ClientResponse) -> Event:
    while True:
        event = await read_event(resp)
        if event.event == "finding":
            return event


async def test_live_stream_with_filter(api: Api) -> None:
    store = api.ctx.store
    store.add(make_finding("before"))
    async with api.session.get(api.url + "/v1/findings/stream",
                               params={"min_priority": "error"}) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/event-stream"
        assert (await read_event(resp)).event == ""  # the retry: line
        store.add(make_finding("low"))
        wanted = store.add(make_finding("high", priority=Priority.CRITICAL))
        event = await next_finding(resp)
        assert event.id == wanted.id and event.data is not None and event.data["rule"] == "high"


async def test_reconnect_with_last_event_id_misses_nothing(api: Api) -> None:
    store = api.ctx.store
    async with api.session.get(api.url + "/v1/findings/stream") as resp:
        await read_event(resp)
        first = [store.add(make_finding(f"a{i}")).id for i in range(5)]
        got = [(await next_finding(resp)).id for _ in range(3)]
    assert got == first[:3]
    # Disconnected after id first[2]: more arrive while no client is connected.
    missed = [store.add(make_finding(f"b{i}")).id for i in range(7)]
    headers = {"Last-Event-ID": str(got[-1])}
    async with api.session.get(api.url + "/v1/findings/stream", headers=headers) as resp:
        resumed = [(await next_finding(resp)).id for _ in range(9)]
        live = store.add(make_finding("c"))
        resumed.append((await next_finding(resp)).id)
    assert resumed == [*first[3:], *missed, live.id]


async def test_resume_with_query_parameter_and_filter(api: Api) -> None:
    store = api.ctx.store
    ids = [store.add(make_finding("x" if i % 2 else "y")).id or 0 for i in range(6)]
    params = {"last_event_id": str(ids[0]), "rule": "x"}
    async with api.session.get(api.url + "/v1/findings/stream", params=params) as resp:
        got = [(await next_finding(resp)).id for _ in range(3)]
    assert got == [ids[1], ids[3], ids[5]]


async def test_slow_subscriber_gap_is_filled_from_the_store(api: Api) -> None:
    store = api.ctx.store
    async with api.session.get(api.url + "/v1/findings/stream") as resp:
        await read_event(resp)
        # More than a subscription holds (1000), added without yielding to the server.
        ids = [store.add(make_finding(f"burst{i}")).id for i in range(2500)]
        got = [(await next_finding(resp)).id for _ in range(2500)]
    assert got == ids


async def test_heartbeats(make_api: ApiFactory) -> None:
    api = await make_api(heartbeat_s=0.05)
    async with api.session.get(api.url + "/v1/findings/stream") as resp:
        await read_event(resp)
        assert (await read_event(resp)).comment == "heartbeat"


async def test_server_close_ends_open_streams(make_api: ApiFactory) -> None:
    api = await make_api()
    async with api.session.get(api.url + "/v1/findings/stream") as resp:
        await read_event(resp)
        await api.server.close()
        assert await asyncio.wait_for(resp.content.read(), 10) == b""


async def test_server_close_ends_streams_while_findings_flow(make_api: ApiFactory) -> None:
    """Closing while the stream is busy: a cancel that lands as a finding arrives must still
    end the stream (asyncio.wait_for could lose it), and the connection must close with it."""
    api = await make_api(heartbeat_s=0.001)
    store = api.ctx.store

    async def produce() -> None:
        for i in range(100_000):
            store.add(make_finding(f"flow{i}"))
            await asyncio.sleep(0)

    producer = asyncio.create_task(produce())
    try:
        async with api.session.get(api.url + "/v1/findings/stream") as resp:
            for _ in range(50):
                await next_finding(resp)
            await asyncio.wait_for(api.server.close(), 10)
    finally:
        producer.cancel()
