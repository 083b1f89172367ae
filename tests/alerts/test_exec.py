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
