"""Disk full on the state dir (a small tmpfs filled by another writer), with the real daemon.

While the state dir refuses writes the daemon keeps detecting (findings held in memory and
served by the API) and alerting (sent from memory), and says so in its log, /readyz and
/v1/stats; when space returns it writes what it held, alerts go through the outbox again with
no finding sent twice, and the database passes PRAGMA integrity_check.
"""

from __future__ import annotations

import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Containers
from tests.harness import DaemonProcess, write_config
from tests.reliability.receiver import ChatThread, get_raw, sinks_toml, strict_json, wait_until

pytestmark = pytest.mark.usefixtures("ebpf", "docker")

RULE = "Read sensitive file untrusted"
READ_SHADOW = ("sh", "-c", "sleep 1; cat /etc/shadow >/dev/null; sleep 600")  # not the entrypoint


@pytest.fixture
def small_state_dir(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs for the state dir, unmounted afterwards."""
    state = tmp_path / "state"
    state.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", str(state)],
                   check=True)
    try:
        yield state
    finally:
        subprocess.run(["umount", "-l", str(state)], check=False)


def fill(directory: Path) -> Path:
    """Write zeros until the file system is full (what a runaway log would do)."""
    filler = directory / "filler"
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True)
    return filler


def our_findings(daemon: DaemonProcess, ids: list[str]) -> list[dict[str, Any]]:
    status, raw = get_raw(daemon.api_url, f"/v1/findings?rule={RULE.replace(' ', '%20')}")
    assert status == 200
    return [f for f in strict_json(raw)["findings"] if f["container"]["full_id"] in ids]


def test_a_full_state_dir_neither_blinds_nor_silences_the_daemon(
    tmp_path: Path, small_state_dir: Path, containers: Containers
) -> None:
    prefix = f"cauditd-t-full-{uuid.uuid4().hex[:6]}"
    with ChatThread() as chat:
        config = write_config(tmp_path / "c.toml", small_state_dir,
                              sinks_toml(chat, [("webhook", "webhook")]))
        daemon = DaemonProcess(config).wait_ready()

        ids: list[str] = []

        def read_shadow(n: int) -> str:
            result = containers.run(*READ_SHADOW, name=f"{prefix}-{n}", detach=True,
                                    options=("--network", "none"))
            assert result.returncode == 0, result.stderr
            ids.append(result.stdout.strip())
            return ids[-1]

        def alerted() -> set[str]:
            return {m.body["container"]["full_id"] for m in chat.of("webhook")
                    if m.body.get("rule") == RULE}

        try:
            first = read_shadow(0)
            wait_until(lambda: first in alerted(), "the first alert")

            filler = fill(small_state_dir)
            while_full = {read_shadow(1), read_shadow(2)}
            wait_until(lambda: while_full <= alerted(), "alerts while full")
            wait_until(lambda: len(our_findings(daemon, ids)) == 3, "findings while full")
            daemon.wait_for("the state dir refuses writes")
            status, raw = get_raw(daemon.api_url, "/readyz")
            assert status == 503 and strict_json(raw)["error"] == "degraded"
            store = strict_json(get_raw(daemon.api_url, "/v1/stats")[1])["store"]
            assert not store["writable"] and store["held_in_memory"] >= 2

            filler.unlink()
            daemon.wait_for("the state dir takes writes again")
            wait_until(lambda: get_raw(daemon.api_url, "/readyz")[0] == 200, "ready again")
            last = read_shadow(3)
            wait_until(lambda: last in alerted(), "alerts through the outbox again")
        finally:
            assert daemon.stop() == 0
        keys = [m.key for m in chat.of("webhook")
                if m.body.get("rule") == RULE and m.body["container"]["full_id"] in ids]
        assert len(keys) == len(set(keys)) == 4, "each finding alerted once"
    db = sqlite3.connect(small_state_dir / "findings.db")
    try:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        stored = db.execute("SELECT COUNT(*) FROM findings WHERE rule = ? AND container_id IN"
                            f" ({', '.join('?' * len(ids))})", (RULE, *ids)).fetchone()[0]
    finally:
        db.close()
    assert stored == 4
