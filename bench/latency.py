"""Detection latency: from the syscall (timestamp taken in the workload) to the finding.

A static helper (latency_trigger.c) in a container prints CLOCK_REALTIME just before it opens
/etc/shadow, at a fixed interval. Measured: until the finding is readable at GET /v1/findings
(polled every POLL_S) and until the webhook POST arrives at an aiohttp receiver on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    PREFIX,
    CauditdProcess,
    Containers,
    Result,
    Unavailable,
    free_port,
    not_available,
    percentile,
    require_docker,
    require_root,
)

HERE = Path(__file__).resolve().parent
TITLE = "Detection latency (syscall to finding)"
RULE = "Read sensitive file untrusted"
POLL_S = 0.005
MATCH_WINDOW_NS = 20_000_000
FAST_BATCH_MS = 10
SPARSE_MS = 300  # triggers this far apart find the ring buffer reader backed off (idle)
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z")


def run(quick: bool) -> list[Result]:
    try:
        require_root()
        require_docker()
        if shutil.which("gcc") is None:
            raise Unavailable("gcc is missing (scripts/bootstrap.sh --test installs it)")
        count, interval_ms = (20, 50) if quick else (100, 50)
        samples = asyncio.run(measure(count, interval_ms))
        samples |= {
            f"{target}, store.batch_ms = {FAST_BATCH_MS}": values
            for target, values in asyncio.run(
                measure(count, interval_ms, f"[store]\nbatch_ms = {FAST_BATCH_MS}\n")
            ).items()
        }
        samples |= {
            f"{target}, triggers {SPARSE_MS} ms apart": values
            for target, values in asyncio.run(measure(count // 2, SPARSE_MS)).items()
        }
    except Unavailable as exc:
        return [not_available(TITLE, str(exc))]
    return [table(samples)]


def table(samples: dict[str, list[float]]) -> Result:
    result = Result(title=TITLE, columns=["to", "samples", "p50", "p99", "max"])
    result.data["latency_p99_ms"] = {t: percentile(v, 0.99) for t, v in samples.items() if v}
    for target, values in samples.items():
        if not values:
            result.rows.append([target, "0", "-", "-", "-"])
            continue
        result.rows.append(
            [
                target,
                str(len(values)),
                f"{percentile(values, 0.5):.1f} ms",
                f"{percentile(values, 0.99):.1f} ms",
                f"{max(values):.1f} ms",
            ]
        )
    result.notes.append(
        f"Rule {RULE!r}; repeats are not merged (rules.suppress_window_s = 0). The API is polled "
        f"every {POLL_S * 1000:.0f} ms, which adds up to that much to the API figures. The rows "
        f"with store.batch_ms = {FAST_BATCH_MS} rerun the same with the store's write batches "
        "capped at that age instead of the default. The rows with triggers "
        f"{SPARSE_MS} ms apart find the daemon idle at each trigger: its ring buffer reader has "
        "backed off from a 2 ms to a 20 ms drain interval (probes.ringbuf.PollInterval), "
        "which the first event after a quiet spell pays."
    )
    return result


async def measure(count: int, interval_ms: int, extra_toml: str = "") -> dict[str, list[float]]:
    from aiohttp import ClientSession, ClientTimeout, web

    arrivals: list[tuple[int, Any]] = []

    async def receive(request: web.Request) -> web.Response:
        arrivals.append((time.time_ns(), await request.json()))
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/hook", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    sink = (
        '[[alerts.sinks]]\nname = "bench"\nkind = "webhook"\n'
        f'url = "http://127.0.0.1:{port}/hook"\nmin_priority = "debug"\nrate_limit = ""\n'
    )
    try:
        with tempfile.TemporaryDirectory(prefix="cauditd-bench-trigger-") as tmp:
            compile_trigger(Path(tmp))
            with Containers() as containers:
                containers.start(
                    "latency", ["sleep", "900"], ["--network", "none", "-v", f"{tmp}:/bench:ro"]
                )
                with CauditdProcess(
                    sink + extra_toml, rules_options="suppress_window_s = 0.0"
                ) as daemon:
                    await asyncio.sleep(1.0)
                    async with ClientSession(timeout=ClientTimeout(total=5)) as http:
                        seen = await trigger_and_poll(http, daemon, count, interval_ms)
                    await asyncio.sleep(1.0)  # webhooks still in flight
    finally:
        await runner.cleanup()
    triggers, api_seen = seen
    if not api_seen:
        raise Unavailable(
            f"no finding of {RULE!r} for the trigger's open of /etc/shadow at GET /v1/findings "
            "(the rule engine is not wired into `cauditd run` yet, or the rule did not match)"
        )
    hooks = [(t, finding_time(body)) for t, body in arrivals]
    return {
        "API (GET /v1/findings)": latencies(triggers, list(api_seen.items())),
        "webhook POST received": latencies(triggers, [(f, t) for t, f in hooks if f]),
    }


def compile_trigger(folder: Path) -> None:
    done = subprocess.run(
        ["gcc", "-static", "-O2", "-o", str(folder / "trigger"), str(HERE / "latency_trigger.c")],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise Unavailable(f"cannot compile latency_trigger.c: {done.stderr[-300:]}")


async def trigger_and_poll(
    http: Any, daemon: CauditdProcess, count: int, interval_ms: int
) -> tuple[list[int], dict[int, int]]:
    """Run the trigger; poll the API meanwhile. Returns trigger times and finding time -> seen."""
    url = f"{daemon.api}/v1/findings"
    try:
        async with http.get(url, params={"limit": "1"}) as reply:
            if reply.status != 200:
                raise Unavailable(f"GET /v1/findings answered {reply.status}")
    except OSError as exc:
        raise Unavailable(f"cauditd run does not serve GET /v1/findings yet ({exc})") from exc
    proc = await asyncio.create_subprocess_exec(
        "docker",
        "exec",
        PREFIX + "latency",
        "/bench/trigger",
        str(count),
        str(interval_ms),
        stdout=asyncio.subprocess.PIPE,
    )
    triggers: list[int] = []
    seen: dict[int, int] = {}
    reader = asyncio.create_task(read_triggers(proc, triggers))
    deadline = time.monotonic() + count * interval_ms / 1000 + 5
    params = {"container": PREFIX + "latency", "rule": RULE, "limit": "500"}
    while time.monotonic() < deadline and (not reader.done() or len(seen) < len(triggers)):
        async with http.get(url, params=params) as reply:
            body = await reply.json() if reply.status == 200 else {}
        now = time.time_ns()
        for finding in body.get("findings", []):
            seen.setdefault(finding_time(finding) or 0, now)
        await asyncio.sleep(POLL_S)
    await reader
    await proc.wait()
    seen.pop(0, None)
    return triggers, seen


async def read_triggers(proc: asyncio.subprocess.Process, triggers: list[int]) -> None:
    assert proc.stdout is not None
    async for line in proc.stdout:
        parts = line.split()
        if len(parts) == 2:
            triggers.append(int(parts[1]))


def finding_time(document: Any) -> int | None:
    """The event time of a finding document (its `time`), ns since the epoch."""
    from cauditd.findings import parse_rfc3339_ns

    text = document.get("time") if isinstance(document, dict) else None
    if not isinstance(text, str):
        match = RFC3339.search(json.dumps(document))
        text = match.group(0) if match else None
    return parse_rfc3339_ns(text) if text else None


def latencies(triggers: list[int], observed: list[tuple[int, int]]) -> list[float]:
    """Pair each trigger with the finding whose event time follows it closest; ms each."""
    out: list[float] = []
    for trigger in triggers:
        near = [(f - trigger, t) for f, t in observed if 0 <= f - trigger < MATCH_WINDOW_NS]
        if near:
            out.append((min(near)[1] - trigger) / 1e6)
    return out


if __name__ == "__main__":
    for item in run("--quick" in sys.argv):
        print(item.markdown())
