"""Fleet rule rollout: `cauditctl fleet rules push` into a key-value bucket; a real `cauditd run`
and a second host follow it, load a good set as a local reload does, refuse a broken one."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from cauditd.config import RulesConfig
from cauditd.fleet import rollout
from tests.fleet.cluster import Cluster
from tests.fleet.ctl import Fleetctl
from tests.fleet.hosts import SimHost, fleet_config
from tests.harness import DaemonProcess, write_config

pytestmark = pytest.mark.slow
BUCKET = "cauditd-rules"
GOOD = """
[lists]
fleet_tools = ["fleet-probe", "fleet-check"]

[[rules]]
name = "Fleet pushed rule"
desc = "A rule that came through the fleet's bucket."
condition = "evt.type in (execve, execveat) and proc.name in (fleet_tools)"
output = "fleet tool ran (proc=%proc.name container=%container.name)"
priority = "warning"
tags = ["fleet_test"]
"""
BROKEN = GOOD.replace("proc.name in (fleet_tools)", "proc.name in (fleet_tools) and and")


def write_set(root: Path, rule_text: str) -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    rules = root / "fleet.toml"
    rules.write_text(rule_text)
    extra = root / "more.toml"
    extra.write_text('[lists]\nfleet_more = ["x"]\n')
    return [rules, extra]


async def wait_status(ctl: Fleetctl, check: Any, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status = await ctl.document("rules", "status", "--bucket", BUCKET)
        if check(status):
            return status
        assert time.monotonic() < deadline, f"rollout status never settled: {status}"
        await asyncio.sleep(0.5)


def daemon_rules(daemon: DaemonProcess) -> set[str]:
    return {rule["name"] for rule in daemon.get("/v1/rules")["rules"]}


async def test_push_rolls_out_and_a_broken_set_is_refused_everywhere(
    tmp_path: Path, nats_single: Cluster
) -> None:
    servers = ", ".join(f'"{u}"' for u in nats_single.urls)
    config = write_config(tmp_path / "a.toml", tmp_path / "a", (
        "[probes]\nenabled = false\n[network]\nenabled = false\n"
        f'[fleet]\nservers = [{servers}]\nhost = "host-a"\nrules_bucket = "{BUCKET}"\n'
        "heartbeat_interval_s = 1.0\n"))
    daemon = DaemonProcess(config)
    other = SimHost(tmp_path / "b", "host-b",
                    fleet_config(nats_single.urls, rules_bucket=BUCKET),
                    rules=RulesConfig(default_rules=False, paths=[]))
    ctl = Fleetctl(nats_single.urls)
    try:
        await asyncio.to_thread(daemon.wait_ready)
        await other.start()
        local_rules = daemon_rules(daemon)
        good = write_set(tmp_path / "good", GOOD)
        pushed = await ctl.run("rules", "push", "--bucket", BUCKET, *map(str, good),
                               json_output=False)
        assert pushed.returncode == 0, pushed.stderr
        digest = rollout.digest({p.name: p.read_bytes() for p in good})
        assert digest in pushed.stdout

        status = await wait_status(ctl, lambda s: [h["running"] for h in s["hosts"]]
                                   == [digest, digest])
        assert status["pushed"]["files"] == ["fleet.toml", "more.toml"]
        assert all(h["ok"] for h in status["hosts"])
        assert daemon_rules(daemon) == local_rules | {"Fleet pushed rule"}
        assert [r["name"] for r in other.detector.rules_info()] == ["Fleet pushed rule"]
        fleet = daemon.get("/v1/stats")["fleet"]
        assert (fleet["state"], fleet["host"], fleet["rules_digest"]) == \
            ("connected", "host-a", digest)
        sinks = {s["name"]: s for s in daemon.get("/v1/alerts")["sinks"]}
        assert sinks["fleet"]["kind"] == "nats"

        broken = write_set(tmp_path / "broken", BROKEN)
        assert (await ctl.run("rules", "push", "--bucket", BUCKET,
                              *map(str, broken))).returncode == 0
        bad = rollout.digest({p.name: p.read_bytes() for p in broken})
        status = await wait_status(ctl, lambda s: all(h["last_offered"] == bad
                                                      for h in s["hosts"]))
        for host in status["hosts"]:
            assert host["running"] == digest and host["ok"] is False
            assert any("fleet.toml:" in error for error in host["errors"]), host["errors"]
        assert daemon_rules(daemon) == local_rules | {"Fleet pushed rule"}
        assert [r["name"] for r in other.detector.rules_info()] == ["Fleet pushed rule"]
        table = await ctl.run("rules", "status", "--bucket", BUCKET, json_output=False)
        assert f"bucket {BUCKET}: {bad}" in table.stdout and "host-a: " in table.stdout

        daemon.proc.send_signal(signal.SIGHUP)  # a local reload keeps the fleet's set
        await asyncio.to_thread(daemon.wait_for, "configuration reloaded")
        assert "Fleet pushed rule" in daemon_rules(daemon)
        assert daemon.stop() == 0
        again = DaemonProcess(config)  # and a restart starts with it, before NATS answers
        try:
            await asyncio.to_thread(again.wait_ready)
            assert "Fleet pushed rule" in daemon_rules(again)
        finally:
            again.stop()
    finally:
        daemon.kill()
        await other.stop()
