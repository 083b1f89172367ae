"""The exec sink runs a real program with the finding's JSON on stdin."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path

from tests.alerts.conftest import Daemon, eventually, finding, sink

RECORDER = """#!/bin/sh
# Appends the finding on stdin to $1 and the idempotency key to $2; fails its first run
# when $3 is given and that marker file does not exist yet.
if [ -n "$3" ] && [ ! -e "$3" ]; then touch "$3"; echo "first run fails" >&2; exit 3; fi
cat >> "$1"
printf '%s\\n' "$CAUDITD_IDEMPOTENCY_KEY" >> "$2"
"""


def script(tmp_path: Path) -> Path:
    path = tmp_path / "record.sh"
    path.write_text(RECORDER)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


async def test_exec_sink_hands_each_finding_to_the_program_in_order_with_retry(
    tmp_path: Path, daemon_factory: Callable[..., Daemon]
) -> None:
    out, keys, marker = tmp_path / "findings.jsonl", tmp_path / "keys.txt", tmp_path / "ran"
    command = [str(script(tmp_path)), str(out), str(keys), str(marker)]
    daemon = daemon_factory([sink("pager", "exec", command=command)])
    await daemon.start()
    daemon.add(finding(), finding(rule="Write below etc"), finding(container="db-1"))

    await eventually(lambda: daemon.status("pager")["delivered"] == 3, "3 findings run")

    documents = [json.loads(line) for line in out.read_text().splitlines()]
    assert [d["id"] for d in documents] == daemon.added
    assert documents[1]["rule"] == "Write below etc" and documents[2]["container"]["name"] == "db-1"
    assert [k.rsplit("-", 2)[-2] for k in keys.read_text().split()] == [
        str(i) for i in daemon.added
    ]
    status = daemon.status("pager")
    assert status["retries"] == 1 and "exit 3: first run fails" in status["last_error"]


async def test_exec_timeouts_retry_and_a_missing_program_fails_for_good(
    tmp_path: Path, daemon_factory: Callable[..., Daemon]
) -> None:
    daemon = daemon_factory([
        sink("slow", "exec", command=["sleep", "30"], timeout_s=0.2, max_attempts=2),
        sink("missing", "exec", command=[str(tmp_path / "no-such-program")]),
    ])  # fmt: skip
    await daemon.start()
    daemon.add(finding())

    await eventually(
        lambda: daemon.status("slow")["failed"] == 1 and daemon.status("missing")["failed"] == 1,
        "both sinks gave up",
    )
    slow, missing = daemon.status("slow"), daemon.status("missing")
    assert slow["retries"] == 1 and slow["last_error"].startswith("timeout")
    assert missing["retries"] == 0 and missing["last_error"].startswith("cannot run")


CAPABILITIES = """#!/bin/sh
# Copies this program's capability sets and no_new_privs flag to $1.
grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs):' /proc/self/status > "$1"
"""


def capability_sets(text: str) -> dict[str, int]:
    """Cap* and NoNewPrivs of a /proc/<pid>/status text, as numbers."""
    pairs = (line.split(":\t") for line in text.splitlines()
             if line.startswith(("Cap", "NoNewPrivs")))
    return {key: int(value, 16) for key, value in pairs}


async def test_exec_sink_program_runs_without_the_daemons_capabilities(
    tmp_path: Path, daemon_factory: Callable[..., Daemon]
) -> None:
    """The daemon (here: the test, as root) holds every capability; its alert program none."""
    program = tmp_path / "caps.sh"
    program.write_text(CAPABILITIES)
    program.chmod(0o755)
    report = tmp_path / "caps.txt"
    daemon = daemon_factory([sink("pager", "exec", command=[str(program), str(report)])])
    await daemon.start()
    daemon.add(finding())
    await eventually(lambda: daemon.status("pager")["delivered"] == 1, "the program ran")
    own, child = (capability_sets(p.read_text()) for p in (Path("/proc/self/status"), report))
    assert own["CapEff"] != 0, "the test must hold capabilities to show that they are dropped"
    assert child == {
        "CapInh": 0, "CapPrm": 0, "CapEff": 0, "CapBnd": 0, "CapAmb": 0, "NoNewPrivs": 1,
    }
