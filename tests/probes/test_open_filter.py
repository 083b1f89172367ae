"""The open filter in the kernel: a container opens paths some rule watches and paths none
does; exactly the ones the rules' derived filter lets through reach user space, and they match
what the filter's Python model (OpenFilter.passes) says. With the filter off, every one does."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from cauditd.events import FileEvent
from cauditd.rules.loader import load_ruleset
from cauditd.rules.prefilter import OPEN_TYPES, READ, WRITE
from tests.conftest import Containers, DaemonThread, daemon_config

pytestmark = pytest.mark.usefixtures("ebpf", "docker")

RULES = """
[macros]
reads = "evt.type in (open, openat, openat2) and evt.is_open_read = true"
writes = "evt.type in (open, openat, openat2, creat) and evt.is_open_write = true"

[[rules]]
name = "shadow read"
condition = "reads and fd.name = /etc/shadow"
output = "%fd.name"
priority = "warning"

[[rules]]
name = "srv written"
condition = "writes and fd.name startswith /srv/"
output = "%fd.name"
priority = "warning"

[[rules]]
name = "key read"
condition = "reads and fd.filename = id_rsa"
output = "%fd.name"
priority = "warning"
"""

# (what the container opens, the mode, the path user space reports)
OPENS = [
    ("/etc/shadow", READ, "/etc/shadow"),
    ("/etc/shadowy", READ, "/etc/shadowy"),
    ("/etc/hostname", READ, "/etc/hostname"),
    ("/etc/./hosts", READ, "/etc/hosts"),
    ("//etc/group", READ, "/etc/group"),
    ("/etc/x/../services", READ, "/etc/services"),
    ("rel-file", READ, "/tmp/rel-file"),
    ("/home/u/.ssh/id_rsa", READ, "/home/u/.ssh/id_rsa"),
    ("/home/u/.ssh/id_rsa.pub", READ, "/home/u/.ssh/id_rsa.pub"),
    ("/srv/out", WRITE, "/srv/out"),
    ("/tmp/out", WRITE, "/tmp/out"),
    ("/etc/shadow", WRITE, "/etc/shadow"),
]
SENTINEL = "/etc/shadow"


def script() -> str:
    lines = ["cd /tmp", "mkdir -p /srv"]
    for raw, mode, _reported in OPENS:
        lines.append(f"cat {raw} >/dev/null 2>&1" if mode == READ else f": >> {raw}")
    lines.append(f"cat {SENTINEL} >/dev/null")  # arrives after everything above
    return "; ".join(lines)


def opened(
    tmp_path: Path, containers: Containers, open_filter: bool
) -> tuple[set[tuple[str, int]], int]:
    """The (path, mode) of the container's opens that reached user space, and how many opens
    the kernel counted as filtered meanwhile."""
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    config = daemon_config(tmp_path, all_syscalls=False, open_filter=open_filter)
    config.rules.default_rules = False
    config.rules.paths = [str(rules)]
    runner = DaemonThread(config)
    runner.start()
    try:
        name = f"cauditd-t-{uuid.uuid4().hex[:10]}"
        result = containers.run("sh", "-c", script(), name=name, options=("--network", "none"))
        assert result.returncode == 0, result.stderr
        cid = containers.inspect_id(name)

        def ours(ev: object) -> bool:
            return isinstance(ev, FileEvent) and ev.type in OPEN_TYPES and ev.container.id == cid

        runner.wait_for(lambda ev: ours(ev) and ev.path == SENTINEL and ev.flags & 3 == 0)
        events = [ev for ev in runner.events if ours(ev)]
        described = runner.call(runner.daemon.stats)["probes"]["syscall"]["open_filter"]
        assert described == ("opens of 1 prefixes, 1 exacts, 1 names" if open_filter
                             else "every open")  # GET /v1/stats
    finally:
        runner.stop()  # polls the kernel's counters a last time
    seen = {(ev.path, WRITE if ev.flags & 3 else READ) for ev in events[:-1]}
    return seen, runner.daemon.probes.filtered_total


def test_only_opens_a_rule_can_match_reach_user_space(
    tmp_path: Path, containers: Containers
) -> None:
    rules = tmp_path / "model.toml"
    rules.write_text(RULES)
    model = load_ruleset([rules]).open_filter()
    expected = {(reported, mode) for raw, mode, reported in OPENS if model.passes(raw, mode)}
    assert expected == {
        ("/etc/shadow", READ), ("/etc/hosts", READ), ("/etc/group", READ),
        ("/etc/services", READ), ("/tmp/rel-file", READ), ("/home/u/.ssh/id_rsa", READ),
        ("/srv/out", WRITE),
    }
    seen, filtered = opened(tmp_path, containers, open_filter=True)
    candidates = {(reported, mode) for _raw, mode, reported in OPENS}
    assert seen & candidates == expected
    assert filtered >= len(OPENS) - len(expected)  # counted (cauditd_opens_filtered)


def test_with_the_filter_off_every_open_arrives(tmp_path: Path, containers: Containers) -> None:
    seen, filtered = opened(tmp_path, containers, open_filter=False)
    assert {(reported, mode) for _raw, mode, reported in OPENS} <= seen
    assert filtered == 0
