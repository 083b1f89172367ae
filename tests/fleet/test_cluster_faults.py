"""Two hosts publish into a 3-node JetStream cluster (stream replicas 3) while brokers die.

Host A is a real `cauditd run` whose findings come from a container reading /etc/shadow; host B
is a replaying publisher (the daemon's own store, outbox and fleet publisher, fed recorded
findings). One broker is killed and restarted, then all three are down for 30 s. Afterwards every
finding of each host is in the stream exactly once, in the order the host made them, and host A
kept detecting and storing while the brokers were away.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from cauditd.findings import Priority
from cauditd.fleet import query
from tests.conftest import Containers
from tests.fakes import make_finding
from tests.fleet.cluster import Cluster, Node
from tests.fleet.ctl import Fleetctl
from tests.fleet.hosts import SimHost, fleet_config
from tests.harness import DaemonProcess, write_config

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ebpf", "docker")]

OUTAGE_S = 30.0
PRIORITIES = (Priority.CRITICAL, Priority.WARNING, Priority.NOTICE, Priority.ERROR)


def daemon_fleet_config(path: Path, state: Path, cluster: Cluster) -> Path:
    servers = ", ".join(f'"{url}"' for url in cluster.urls)
    return write_config(path, state, (
        "[rules]\nsuppress_window_s = 0\nfinding_budget = 0\n[network]\nenabled = false\n"
        f'[fleet]\nservers = [{servers}]\nhost = "host-a"\nreplicas = 3\n'
        "retry_max_s = 1.0\nheartbeat_interval_s = 1.0\nack_timeout_s = 2.0\n"
    ))


async def replay(host: SimHost, stop: asyncio.Event, per_s: float = 20.0) -> None:
    """Recorded findings at a steady rate until `stop`."""
    n = 0
    while not stop.is_set():
        host.add(make_finding(rule=f"Replayed rule {n % 5}", priority=PRIORITIES[n % 4]))
        n += 1
        await asyncio.sleep(1 / per_s)


def stored_ids(db: Path) -> tuple[list[int], list[int]]:
    """Every finding the host stored, and those still queued for the fleet sink at its stop
    (found by other helpers' containers after the drain: kept for the next start)."""
    with sqlite3.connect(db) as conn:
        stored = [row[0] for row in conn.execute("SELECT id FROM findings ORDER BY id")]
        queued = [row[0] for row in conn.execute(
            "SELECT finding_id FROM alert_outbox WHERE sink = 'fleet' ORDER BY seq")]
    return stored, queued


def fleet_depth(daemon: DaemonProcess) -> int:
    sinks = daemon.get("/v1/alerts")["sinks"]
    return int(next(s for s in sinks if s["name"] == "fleet")["queue_depth"])


async def wait_drained(daemon: DaemonProcess, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while await asyncio.to_thread(fleet_depth, daemon):
        assert time.monotonic() < deadline, f"host A still has {fleet_depth(daemon)} queued"
        await asyncio.sleep(0.5)


async def fresh_heartbeats(ctl: Fleetctl, names: list[str]) -> list[dict[str, Any]]:
    """`cauditctl fleet hosts` once every host has beaten since the cluster came back (the
    heartbeat stream recovers on its own, a few seconds after the findings stream)."""
    deadline = time.monotonic() + 60
    while True:
        done = await ctl.run("hosts")
        if done.returncode == 0:
            hosts = json.loads(done.stdout)
            if [h["host"] for h in hosts] == names and all(h["age_s"] < 3 for h in hosts):
                return list(hosts)
        assert time.monotonic() < deadline, f"no fresh heartbeats: {done.stdout}{done.stderr}"
        await asyncio.sleep(1)


async def stream_leader(cluster: Cluster) -> Node:
    import nats

    nc = await nats.connect(servers=cluster.urls, connect_timeout=5)
    try:
        info = await nc.jetstream(timeout=10).stream_info("CAUDITD")
    finally:
        await nc.close()
    assert info.config.num_replicas == 3 and info.cluster is not None
    return next(node for node in cluster.nodes if node.name == info.cluster.leader)


async def stream_ids_by_host(cluster: Cluster) -> dict[str, list[int]]:
    import nats

    nc = await nats.connect(servers=cluster.urls, connect_timeout=5)
    try:
        js = nc.jetstream(timeout=10)
        messages, subs = await query.read(js, "CAUDITD", ["cauditd.*.finding.*"], None)
        for sub in subs:
            await sub.unsubscribe()
    finally:
        await nc.close()
    by_host: dict[str, list[int]] = {}
    for message in messages:
        host = message.subject.split(".")[1]
        assert message.subject.endswith("." + message.doc["priority"].lower())
        by_host.setdefault(host, []).append(int(message.doc["id"]))
    return by_host


async def test_nothing_lost_or_duplicated_through_broker_failures(
    tmp_path: Path, nats_cluster: Cluster, containers: Containers
) -> None:
    config = daemon_fleet_config(tmp_path / "a.toml", tmp_path / "a", nats_cluster)
    daemon = DaemonProcess(config)
    host_b = SimHost(tmp_path / "b", "host-b", fleet_config(nats_cluster.urls, replicas=3))
    stop = asyncio.Event()
    try:
        await asyncio.to_thread(daemon.wait_ready)
        await host_b.start()
        producer = asyncio.create_task(replay(host_b, stop))
        reader = containers.run("sh", "-c", "while true; do cat /etc/shadow >/dev/null; "
                                "sleep 0.2; done", name="cauditd-t-fleet-a", detach=True,
                                options=("--network", "none"))
        assert reader.returncode == 0, reader.stderr
        await asyncio.sleep(5)
        victim = await stream_leader(nats_cluster)  # the cluster loses the stream's leader
        nats_cluster.kill(victim)
        await asyncio.sleep(5)
        nats_cluster.start(victim)
        await asyncio.sleep(5)

        before = daemon.get("/v1/findings?limit=1")["findings"][0]["id"]
        nats_cluster.kill()
        await asyncio.sleep(OUTAGE_S)
        during = daemon.get("/v1/findings?limit=1")["findings"][0]["id"]
        assert during - before > 50, "host A stopped storing findings while NATS was down"
        queued = await asyncio.to_thread(fleet_depth, daemon)
        assert queued > 50, f"host A's outbox held only {queued} findings during the outage"
        nats_cluster.start()
        await asyncio.sleep(5)

        stop.set()
        await producer
        containers.remove_all()
        await asyncio.sleep(1)
        await wait_drained(daemon)
        await host_b.drained(90)
        hosts = await fresh_heartbeats(Fleetctl(nats_cluster.urls), ["host-a", "host-b"])
        assert hosts[0]["drops"] == {"syscall": 0, "network": 0} and hosts[0]["ready"]
        assert all(h["version"] and h["rules_digest"].startswith("local:") for h in hosts)
        assert daemon.stop() == 0
        await host_b.stop()

        in_stream = await stream_ids_by_host(nats_cluster)
        for host, db in (("host-a", tmp_path / "a" / "findings.db"),
                         ("host-b", tmp_path / "b" / "findings.db")):
            stored, queued = stored_ids(db)
            published = in_stream.get(host, [])
            assert queued == stored[len(stored) - len(queued):], f"{host}: outbox not a tail"
            assert len(queued) < 10, f"{host}: {len(queued)} findings never published"
            assert len(stored) > 100, f"{host}: only {len(stored)} findings made"
            assert len(published) == len(set(published)), f"{host}: duplicates in the stream"
            assert published == sorted(published), f"{host}: order not kept"
            assert published + queued == stored, (
                f"{host}: {len(stored)} stored, {len(published)} in the stream; missing "
                f"{sorted(set(stored) - set(published))[:10]}"
            )
    finally:
        stop.set()
        daemon.kill()
        await host_b.stop()
        if daemon.proc.returncode not in (0, None):
            print("\n".join(daemon.lines[-40:]))
