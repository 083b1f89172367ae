"""Fleet export: publish throughput from the outbox, finding-to-stream latency, and a simulated
fleet raised until the cluster or this machine saturates (issue 15).

Everything runs on 127.0.0.1: nats-server processes started here (one server, and a 3-node
JetStream cluster with stream replicas 3), simulated hosts in this process (the daemon's own
store, outbox, fleet publisher and network history, fed recorded findings and flow records).
Baselines are measured in the same run: a bare nats-py client publishing to JetStream one
message at a time (what the publisher does, minus the outbox) and pipelined.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from common import Result, Unavailable, not_available, percentile  # noqa: E402

TITLES = ("Fleet: publish throughput from the outbox", "Fleet: finding to stream latency",
          "Fleet: simulated hosts into a 3-node cluster")
FINDINGS_PER_HOST_S = 10
FLOWS_PER_HOST_S = 200
MIN_RATE = 0.95  # a step counts only if the simulator made at least this share of its records


def run(quick: bool) -> list[Result]:
    from tests.fleet.cluster import nats_server_problem

    problem = nats_server_problem()
    if problem:
        return [not_available(title, problem) for title in TITLES]
    try:
        return asyncio.run(measure(quick))
    except Unavailable as exc:
        return [not_available(title, str(exc)) for title in TITLES]


async def measure(quick: bool) -> list[Result]:
    from tests.fleet.cluster import Cluster

    with tempfile.TemporaryDirectory(prefix="cauditd-bench-fleet-") as tmp:
        root = Path(tmp)
        single, cluster = Cluster(root / "one", size=1), Cluster(root / "three", size=3)
        single.start()
        cluster.start()
        try:
            throughput = await throughput_table(root, single, cluster, quick)
            latency = await latency_table(root, cluster, quick)
            fleet = await simulation_table(root, cluster, quick)
        finally:
            single.stop()
            cluster.stop()
    return [throughput, latency, fleet]


# --- publish throughput ------------------------------------------------------------------------


async def bare_rate(urls: list[str], replicas: int, count: int, *, pipelined: bool) -> float:
    """Messages/s a bare nats-py client stores in a fresh stream (the baseline)."""
    import nats

    nc = await nats.connect(servers=urls)
    js = nc.jetstream(timeout=10)
    name = f"BARE{replicas}{'P' if pipelined else 'S'}{time.monotonic_ns() % 10**6}"
    await js.add_stream(name=name, subjects=[f"{name.lower()}.>"], num_replicas=replicas)
    payload = b"x" * 900  # about a finding's JSON
    began = time.perf_counter()
    if pipelined:
        for start in range(0, count, 256):
            await asyncio.gather(*(js.publish(f"{name.lower()}.m", payload,
                                              headers={"Nats-Msg-Id": f"{i}"})
                                   for i in range(start, min(count, start + 256))))
    else:
        for i in range(count):
            await js.publish(f"{name.lower()}.m", payload, headers={"Nats-Msg-Id": f"{i}"})
    rate = count / (time.perf_counter() - began)
    await js.delete_stream(name)
    await nc.close()
    return rate


async def outbox_rate(root: Path, urls: list[str], replicas: int, count: int) -> float:
    """Findings/s from a host's outbox into the stream: queued all at once, timed to drained."""
    from tests.fakes import make_finding
    from tests.fleet.hosts import SimHost, fleet_config

    config = fleet_config(urls, replicas=replicas, stream=f"OUTBOX{replicas}",
                          subject_prefix=f"rate{replicas}", heartbeat_interval_s=60.0)
    host = await SimHost(root / f"rate-{replicas}-{time.monotonic_ns()}", "bench", config).start()
    try:
        await host.connected()
        began = time.perf_counter()
        for _ in range(count):
            host.add(make_finding())
        await host.drained(600)
        return count / (time.perf_counter() - began)
    finally:
        await host.stop()


async def throughput_table(root: Path, single: Any, cluster: Any, quick: bool) -> Result:
    count, rounds = (1000, 1) if quick else (5000, 3)
    result = Result(title=TITLES[0], columns=[
        "servers", "outbox -> stream (findings/s)", "bare client, one in flight (msg/s)",
        "outbox / bare", "bare client, 256 in flight (msg/s)"])
    for label, target, replicas in (("1 server, replicas 1", single, 1),
                                    ("3-node cluster, replicas 3", cluster, 3)):
        outbox, bare, piped = [], [], []
        for _ in range(rounds):
            bare.append(await bare_rate(target.urls, replicas, count, pipelined=False))
            outbox.append(await outbox_rate(root, target.urls, replicas, count))
            piped.append(await bare_rate(target.urls, replicas, count, pipelined=True))
        ratio = statistics.median(o / b for o, b in zip(outbox, bare, strict=True))
        result.rows.append([label, _rate(outbox), _rate(bare), f"{ratio:.2f}x", _rate(piped)])
    result.notes += [
        f"{count} findings queued in one host's outbox at once, timed until the fleet sink's "
        f"queue is empty; median of {rounds} round(s) (range in brackets). The publisher keeps "
        "one publish in flight so a finding is never stored before an earlier one of the same "
        "host (see docs/deploy.md); the bare client shows what that costs against pipelining.",
    ]
    return result


def _rate(values: list[float]) -> str:
    text = f"{statistics.median(values):,.0f}"
    return text + (f" ({min(values):,.0f}-{max(values):,.0f})" if len(values) > 1 else "")


# --- latency -------------------------------------------------------------------------------------


async def latency_table(root: Path, cluster: Any, quick: bool) -> Result:
    import nats
    from tests.fakes import make_finding
    from tests.fleet.hosts import SimHost, fleet_config

    samples = 50 if quick else 200
    config = fleet_config(cluster.urls, replicas=3, stream="LATENCY", subject_prefix="lat",
                          heartbeat_interval_s=60.0)
    host = await SimHost(root / "latency", "bench", config).start()
    host.store.config.batch_ms = 20  # the daemon's default write batching
    nc = await nats.connect(servers=cluster.urls)
    received: dict[int, int] = {}
    sent: dict[int, int] = {}

    async def on_message(msg: Any) -> None:
        import json

        received[json.loads(msg.data)["id"]] = time.perf_counter_ns()

    sub = await nc.subscribe("lat.bench.finding.*", cb=on_message)
    try:
        await host.connected()
        for _ in range(samples):
            finding = host.add(make_finding())
            sent[finding.id or 0] = time.perf_counter_ns()
            await asyncio.sleep(0.05)
        await host.drained(60)
        await asyncio.sleep(0.5)
        bare = await bare_latency(nc, samples)
    finally:
        await sub.unsubscribe()
        await nc.close()
        await host.stop()
    ms = [(received[i] - t) / 1e6 for i, t in sent.items() if i in received]
    result = Result(title=TITLES[1], columns=["path", "samples", "p50 (ms)", "p99 (ms)"])
    result.rows.append(["store.add -> stored in the stream (R3), store.batch_ms = 20",
                        str(len(ms)), f"{percentile(ms, 0.5):.1f}", f"{percentile(ms, 0.99):.1f}"])
    result.rows.append(["bare client: publish -> acked (R3)", str(len(bare)),
                        f"{percentile(bare, 0.5):.1f}", f"{percentile(bare, 0.99):.1f}"])
    result.notes.append(
        "A finding is added to the host's store every 50 ms; latency is until a subscriber on "
        "the finding's subject receives it (JetStream delivers it there once stored). Most of "
        "it is the store's write batching (store.batch_ms), which alerts also wait for.")
    return result


async def bare_latency(nc: Any, samples: int) -> list[float]:
    js = nc.jetstream(timeout=10)
    out = []
    for i in range(samples):
        began = time.perf_counter_ns()
        await js.publish("lat.bare.finding.warning", b"{}", headers={"Nats-Msg-Id": f"b{i}"})
        out.append((time.perf_counter_ns() - began) / 1e6)
    return out


# --- the simulated fleet ---------------------------------------------------------------------


async def simulate(root: Path, cluster: Any, hosts: int, seconds: float,
                   tag: str) -> dict[str, Any]:
    """`hosts` hosts at 10 findings/s and 200 flows/s each for `seconds`; what got stored."""
    import nats
    from tests.fakes import make_finding
    from tests.fleet.hosts import SimHost, fleet_config

    config = fleet_config(cluster.urls, replicas=3, publish_flows=True, heartbeat_interval_s=5.0)
    fleet = [await SimHost(root / f"{tag}-{i}", f"{tag}-{i}", config).start()
             for i in range(hosts)]
    produced = {"finding": 0, "flow": 0}
    cpu_began = time.process_time()
    began = time.monotonic()
    tick = 0
    while (elapsed := time.monotonic() - began) < seconds:
        tick += 1
        for host in fleet:
            for _ in range(FINDINGS_PER_HOST_S // 5):
                host.add(make_finding())
            for n in range(FLOWS_PER_HOST_S // 5):
                host.history.add_flow({"container_id": "a1" * 32, "container_name": "web",
                                       "peer": f"10.0.0.{n}", "last_ns": time.time_ns()})
            await host.history.flush()
        produced["finding"] += hosts * (FINDINGS_PER_HOST_S // 5)
        produced["flow"] += hosts * (FLOWS_PER_HOST_S // 5)
        await asyncio.sleep(max(0.0, tick * 0.2 - elapsed))
    lag_findings = sum(host.depth for host in fleet)
    lag_flows = sum([await host.store.run_in_writer(_flow_backlog) for host in fleet])
    cpu = (time.process_time() - cpu_began) / seconds
    drain_deadline = time.monotonic() + max(30.0, seconds)
    for host in fleet:
        try:
            await host.drained(max(1.0, drain_deadline - time.monotonic()))
        except AssertionError:
            break
    nc = await nats.connect(servers=cluster.urls)
    try:
        js = nc.jetstream(timeout=30)
        stored = {"finding": 0, "flow": 0}
        for _ in range(int(max(30.0, seconds))):  # flows drain after findings
            info = await js.stream_info("CAUDITD", subjects_filter="cauditd.*.>")
            stored = {"finding": 0, "flow": 0}
            for subject, count in (info.state.subjects or {}).items():
                if subject.split(".")[1].startswith(f"{tag}-"):
                    stored["flow" if subject.endswith(".flow") else "finding"] += count
            if stored == produced:
                break
            await asyncio.sleep(1.0)
    finally:
        await nc.close()
        for host in fleet:
            await host.stop()
    intended = hosts * FINDINGS_PER_HOST_S * seconds
    return {"hosts": hosts, "produced": produced, "stored": stored, "lag": lag_findings,
            "lag_flows": lag_flows, "cpu": cpu, "rate": produced["finding"] / intended,
            "kept_up": lag_findings <= hosts * FINDINGS_PER_HOST_S
            and lag_flows <= hosts * FLOWS_PER_HOST_S,
            "lossless": stored == produced}


def _flow_backlog(conn: Any) -> int:
    """Flow rows not yet published (past the fleet's cursor)."""
    row = conn.execute("SELECT COUNT(*) FROM net_flows WHERE id > COALESCE((SELECT last_id FROM"
                       " fleet_cursors WHERE kind = 'flow'), 0)").fetchone()
    return int(row[0])


async def query_p99(cluster: Any, runs: int) -> tuple[float, float]:
    """Wall time of `cauditctl fleet findings --since 5m` (p50, p99), as a user runs it."""
    servers = [a for url in cluster.urls for a in ("--server", url)]
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        done = await asyncio.to_thread(subprocess.run, [
            sys.executable, "-m", "cauditd.ctl", "fleet", *servers, "findings", "--since", "5m",
            "--limit", "50"], capture_output=True, text=True, timeout=300)
        times.append(time.perf_counter() - began)
        if done.returncode != 0:
            raise Unavailable(f"cauditctl fleet findings failed: {done.stderr.strip()[-200:]}")
    return percentile(times, 0.5), percentile(times, 0.99)


async def backfill(cluster: Any, hosts: int, seconds: float) -> int:
    """Five minutes' worth of findings of `hosts` hosts, published pipelined (query size)."""
    import json

    import nats
    from tests.fakes import make_finding

    nc = await nats.connect(servers=cluster.urls)
    js = nc.jetstream(timeout=30)
    total = int(hosts * FINDINGS_PER_HOST_S * seconds)
    payload = json.dumps(make_finding().to_json()).encode()
    for start in range(0, total, 256):
        await asyncio.gather(*(js.publish(f"cauditd.backfill-{i % hosts}.finding.warning",
                                          payload) for i in range(start, min(total, start + 256))))
    await nc.close()
    return total


async def simulation_table(root: Path, cluster: Any, quick: bool) -> Result:
    seconds = 10.0 if quick else 30.0
    steps = (2, 4, 8) if quick else (2, 4, 8, 12, 16, 24, 32)
    result = Result(title=TITLES[2], columns=[
        "hosts", "findings made / in stream", "flows made / in stream",
        "queued at end (findings / flows)", "CPU of the hosts' process", "verdict"])
    largest = 0
    for hosts in steps:
        outcome = await simulate(root, cluster, hosts, seconds, f"s{hosts}")
        made, stored = outcome["produced"], outcome["stored"]
        ok = outcome["lossless"] and outcome["kept_up"] and outcome["rate"] >= MIN_RATE
        verdict = ("no loss, kept up" if ok else "lost records" if not outcome["lossless"]
                   else "fell behind" if not outcome["kept_up"]
                   else f"simulator saturated ({outcome['rate']:.0%} of the rate)")
        result.rows.append([str(hosts), f"{made['finding']:,} / {stored['finding']:,}",
                            f"{made['flow']:,} / {stored['flow']:,}",
                            f"{outcome['lag']} / {outcome['lag_flows']}",
                            f"{outcome['cpu']:.0%}", verdict])
        if not ok:
            break
        largest = hosts
    runs = 5 if quick else 20
    if largest:
        messages = await backfill(cluster, largest, 300.0)
        p50, p99 = await query_p99(cluster, runs)
        result.notes.append(
            f"Largest fleet with no loss that kept up: **{largest} hosts** "
            f"({largest * (FINDINGS_PER_HOST_S + FLOWS_PER_HOST_S):,} records/s into the "
            f"cluster). `cauditctl fleet findings --since 5m` over 5 minutes of their findings "
            f"({messages:,} messages backfilled): p50 {p50:.2f} s, p99 {p99:.2f} s "
            f"({runs} runs).")
    result.notes += [
        f"Each simulated host makes {FINDINGS_PER_HOST_S} findings/s and {FLOWS_PER_HOST_S} "
        f"flow records/s for {seconds:.0f} s (findings through the outbox, flows through the "
        "network history tables, as on a real host), all hosts in one Python process beside "
        "the three nats-server processes on this 2-core VM (findings: one publish in flight "
        "per host, for their order; flows: 64). Real hosts each have their own CPU; here the "
        "hosts, the cluster and the machine's other jobs share two cores.",
        "\"Kept up\": at the end of the run at most one second of findings and of flows was "
        f"still queued, and the simulator made at least {MIN_RATE:.0%} of the intended records "
        "(past that this machine, not the cluster, is what saturated); "
        "\"in stream\" counts after the hosts drained (JetStream drops duplicates by "
        "Nats-Msg-Id, so equal counts mean nothing lost and nothing twice).",
    ]
    return result
