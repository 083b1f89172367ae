"""`cauditctl fleet findings` and `fleet hosts` against a real JetStream server, two hosts."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cauditd.findings import Priority, rfc3339_ns
from tests.fakes import make_finding
from tests.fleet.cluster import Cluster
from tests.fleet.ctl import CAUDITCTL, Fleetctl
from tests.fleet.hosts import SimHost, fleet_config


@pytest.fixture
async def two_hosts(tmp_path: Path, nats_single: Cluster) -> AsyncIterator[list[SimHost]]:
    hosts = [await SimHost(tmp_path / name, name, fleet_config(nats_single.urls)).start()
             for name in ("web-1", "db-1")]
    try:
        yield hosts
    finally:
        for host in hosts:
            await host.stop()


async def publish(host: SimHost, *specs: tuple[str, Priority, str]) -> None:
    for rule, priority, container in specs:
        host.add(make_finding(rule=rule, priority=priority, name=container))
    await host.drained(30)


async def test_filters_by_host_priority_rule_container_and_since(
    two_hosts: list[SimHost], nats_single: Cluster
) -> None:
    web, db = two_hosts
    ctl = Fleetctl(nats_single.urls)
    await publish(web, ("Shell", Priority.WARNING, "nginx"), ("Miner", Priority.CRITICAL, "nginx"))
    await publish(db, ("Shell", Priority.NOTICE, "postgres"), ("Dump", Priority.ERROR, "pg"))
    await asyncio.sleep(1.1)
    boundary = rfc3339_ns(time.time_ns())
    await publish(db, ("Late", Priority.CRITICAL, "postgres"))

    every = await ctl.findings("--since", "5m")
    assert [(f["hostname"], f["rule"]) for f in every] == [
        ("db-1", "Late"), ("db-1", "Dump"), ("db-1", "Shell"), ("web-1", "Miner"),
        ("web-1", "Shell")]
    assert {f["rule"] for f in await ctl.findings("--host", "web-1")} == {"Shell", "Miner"}
    critical = await ctl.findings("--min-priority", "critical")
    assert sorted(f["rule"] for f in critical) == ["Late", "Miner"]
    errors_up = await ctl.findings("--min-priority", "error", "--host", "db-1")
    assert [f["rule"] for f in errors_up] == ["Late", "Dump"]
    shells = await ctl.findings("--rule", "Shell")
    assert sorted(f["hostname"] for f in shells) == ["db-1", "web-1"]
    assert [f["rule"] for f in await ctl.findings("--container", "pg")] == ["Dump"]
    assert [f["rule"] for f in await ctl.findings("--since", boundary)] == ["Late"]
    assert await ctl.findings("--host", "nowhere") == []
    assert len(await ctl.findings("--limit", "2")) == 2


async def test_table_output_is_the_findings_table_with_host_qualified_ids(
    two_hosts: list[SimHost], nats_single: Cluster
) -> None:
    await publish(two_hosts[0], ("Shell", Priority.WARNING, "nginx"))
    done = await Fleetctl(nats_single.urls).run("findings", json_output=False)
    assert done.returncode == 0, done.stderr
    header, row = done.stdout.splitlines()
    assert header.split() == ["ID", "TIME", "(UTC)", "PRIORITY", "RULE", "CONTAINER", "OUTPUT"]
    assert row.startswith("web-1/1 ") and "Warning" in row and "nginx" in row


async def test_follow_sees_new_findings(two_hosts: list[SimHost], nats_single: Cluster) -> None:
    web, db = two_hosts
    await publish(web, ("Old", Priority.WARNING, "nginx"))
    servers = [a for url in nats_single.urls for a in ("--server", url)]
    follower = await asyncio.create_subprocess_exec(
        *CAUDITCTL, "--json", "fleet", *servers, "findings", "--follow", "--count", "2",
        "--min-priority", "warning", stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    try:
        assert follower.stdout is not None
        first = await asyncio.wait_for(follower.stdout.readline(), 30)  # caught up: following
        await publish(db, ("Quiet", Priority.NOTICE, "pg"), ("New", Priority.CRITICAL, "pg"))
        await publish(web, ("Newer", Priority.WARNING, "nginx"))
        out, err = await asyncio.wait_for(follower.communicate(), 30)
    finally:
        if follower.returncode is None:
            follower.kill()
            await follower.wait()
    rules = [json.loads(line)["rule"] for line in [first, *out.splitlines()]]
    assert rules == ["Old", "New", "Newer"], err


async def test_hosts_lists_each_heartbeat(two_hosts: list[SimHost], nats_single: Cluster) -> None:
    await asyncio.sleep(1.5)
    hosts = await Fleetctl(nats_single.urls).document("hosts")
    assert [h["host"] for h in hosts] == ["db-1", "web-1"]
    for host in hosts:
        assert host["version"] and host["rules_digest"].startswith("local:sha256:")
        assert host["drops"] == {"syscall": 0, "network": 0}
        assert 0 <= host["age_s"] < 10
    table = await Fleetctl(nats_single.urls).run("hosts", json_output=False)
    assert "LAST_HEARTBEAT" in table.stdout and "web-1" in table.stdout


async def test_unreachable_nats_is_a_clear_error() -> None:
    done = await Fleetctl(["nats://127.0.0.1:9"]).run("findings", timeout=30)
    assert done.returncode == 3
    assert "cannot reach NATS at nats://127.0.0.1:9" in done.stdout + done.stderr
