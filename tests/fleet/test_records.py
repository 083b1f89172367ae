"""Flows and DNS records published from the network history tables (their durable outbox)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

from cauditd.fleet import query
from cauditd.fleet.records import SCHEMA, advance, pending
from tests.fleet.cluster import Cluster
from tests.fleet.hosts import SimHost, fleet_config


def flow(n: int) -> dict[str, Any]:
    return {"container_id": "a1" * 32, "container_name": "web", "peer": f"10.0.0.{n % 250}",
            "port": 443, "l4proto": "tcp", "bytes_out": n, "last_ns": time.time_ns()}


def dns(n: int) -> dict[str, Any]:
    return {"container_id": "a1" * 32, "container_name": "web", "name": f"h{n}.example.test",
            "answers": ["10.0.0.5"], "time_ns": time.time_ns()}


async def test_flows_and_dns_reach_their_subjects_in_order_across_a_restart(
    tmp_path: Path, nats_single: Cluster, js_client: Any
) -> None:
    config = fleet_config(nats_single.urls, publish_flows=True, publish_dns=True)
    host = await SimHost(tmp_path / "h", "web-1", config).start()
    for n in range(300):
        host.history.add_flow(flow(n))
        if n % 3 == 0:
            host.history.add_dns(dns(n))
    await host.history.flush()
    await asyncio.sleep(1.5)
    await host.stop()  # mid-way or done: the cursor says what is left
    host = await SimHost(tmp_path / "h", "web-1", config).start()
    for n in range(300, 400):
        host.history.add_flow(flow(n))
    await host.history.flush()
    try:
        for _ in range(200):
            left = await host.store.run_in_writer(lambda c: len(pending(c, "flow")) +
                                            len(pending(c, "dns")))
            if not left:
                break
            await asyncio.sleep(0.1)
        assert not left
    finally:
        await host.stop()
    flows, _ = await query.read(js_client, "CAUDITD", ["cauditd.web-1.flow"], None)
    assert [m.doc["bytes_out"] for m in flows] == list(range(400))
    assert all(m.doc["hostname"] == "web-1" for m in flows)
    records, _ = await query.read(js_client, "CAUDITD", ["cauditd.*.dns"], None)
    assert [m.doc["name"] for m in records] == [f"h{n}.example.test" for n in range(0, 300, 3)]


def test_cursor_follows_ids_reused_after_retention_emptied_the_table(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "db")
    conn.executescript(SCHEMA + "CREATE TABLE net_flows (id INTEGER PRIMARY KEY, time_ns INTEGER,"
                       " container_id TEXT, container_name TEXT, doc TEXT);")
    for n in range(5):
        conn.execute("INSERT INTO net_flows (time_ns, container_id, container_name, doc) VALUES"
                     " (?, '', '', '{}')", (n,))
    assert [r.id for r in pending(conn, "flow")] == [1, 2, 3, 4, 5]
    advance(conn, "flow", 5, 5)
    assert pending(conn, "flow") == []
    conn.execute("DELETE FROM net_flows")  # retention took every row; ids start again at 1
    conn.execute("INSERT INTO net_flows (time_ns, container_id, container_name, doc) VALUES"
                 " (99, '', '', '{}')")
    assert [(r.id, r.time_ns) for r in pending(conn, "flow")] == [(1, 99)]
