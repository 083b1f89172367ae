"""GET /v1/findings and /v1/findings/{id}: every filter, keyset pages under concurrent inserts."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from cauditd.findings import Priority, rfc3339_ns
from tests.api.conftest import Api
from tests.fakes import FULL_ID_A, FULL_ID_B, make_finding

HOUR = 3600 * 10**9


async def seed(api: Api) -> None:
    now = time.time_ns()
    store = api.ctx.store
    store.add(make_finding("old shell", time_ns=now - 48 * HOUR))
    store.add(make_finding("crit", time_ns=now - 3 * HOUR, priority=Priority.CRITICAL))
    store.add(make_finding("net", time_ns=now - HOUR // 2, tags=("network",), source="network"))
    store.add(make_finding("db write", time_ns=now - 60 * 10**9, full_id=FULL_ID_B, name="db"))
    store.add(make_finding("host exec", time_ns=now, full_id="host", name="host"))
    await store.flush()


@pytest.mark.parametrize(
    ("params", "rules"),
    [
        ({}, ["host exec", "db write", "net", "crit", "old shell"]),
        ({"since": "2h"}, ["host exec", "db write", "net"]),
        ({"since": "1d", "until": "10m"}, ["net", "crit"]),
        ({"until": rfc3339_ns(time.time_ns() - 24 * HOUR)}, ["old shell"]),
        ({"since": "2000-01-01T00:00:00Z"}, ["host exec", "db write", "net", "crit", "old shell"]),
        ({"min_priority": "error"}, ["crit"]),
        ({"min_priority": "WARNING"}, ["host exec", "db write", "net", "crit", "old shell"]),
        ({"rule": "net"}, ["net"]),
        ([("rule", "net"), ("rule", "crit")], ["net", "crit"]),
        ({"tag": "network"}, ["net"]),
        ({"tag": "shell"}, ["host exec", "db write", "crit", "old shell"]),
        ({"container": FULL_ID_B}, ["db write"]),
        ({"container": FULL_ID_B[:12]}, ["db write"]),
        ({"container": "db"}, ["db write"]),
        ({"container": "host"}, ["host exec"]),
        ({"container": FULL_ID_A, "rule": "net"}, ["net"]),
        ({"source": "network"}, ["net"]),
        ({"source": "k8s_audit"}, []),
        ({"limit": "2"}, ["host exec", "db write"]),
    ],
)
async def test_filters(api: Api, params: Any, rules: list[str]) -> None:
    await seed(api)
    status, body = await api.get("/v1/findings", params)
    assert status == 200, body
    assert [f["rule"] for f in body["findings"]] == rules


async def test_finding_shape_and_get_by_id(api: Api) -> None:
    await seed(api)
    _, page = await api.get("/v1/findings", {"limit": "1"})
    first = page["findings"][0]
    assert set(first) >= {"time", "rule", "priority", "source", "output", "output_fields",
                          "tags", "hostname", "container", "process", "count"}
    status, one = await api.get(f"/v1/findings/{first['id']}")
    assert status == 200 and one == first
    status, missing = await api.get("/v1/findings/999999")
    assert status == 404 and missing["error"] == "not found"


async def test_pages_under_concurrent_inserts_never_repeat_or_skip(api: Api) -> None:
    store = api.ctx.store
    for i in range(250):
        store.add(make_finding(f"r{i}"))
    await store.flush()
    existing = set(range(1, 251))
    seen: list[int] = []
    params: dict[str, str] = {"limit": "37"}
    while True:
        for i in range(20):  # newer findings arrive between pages
            store.add(make_finding(f"new{i}"))
        await asyncio.sleep(0.03)
        status, page = await api.get("/v1/findings", params)
        assert status == 200
        seen += [f["id"] for f in page["findings"]]
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]
    first_page_top = seen[0]
    assert len(seen) == len(set(seen))  # nothing repeated
    assert seen == sorted(seen, reverse=True)
    assert set(seen) == set(range(1, first_page_top + 1))  # nothing skipped below the first page
    assert existing <= set(seen)


async def test_last_page_has_no_cursor(api: Api) -> None:
    await seed(api)
    _, page = await api.get("/v1/findings", {"limit": "5"})
    assert len(page["findings"]) == 5 and page["next_cursor"] is None
    _, page = await api.get("/v1/findings", {"limit": "4"})
    _, rest = await api.get("/v1/findings", {"limit": "4", "cursor": page["next_cursor"]})
    assert [f["rule"] for f in rest["findings"]] == ["old shell"] and rest["next_cursor"] is None
