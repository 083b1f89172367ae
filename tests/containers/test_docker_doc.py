"""Docker's inspect document read into ContainerInfo (the parts that are ours to parse)."""

from __future__ import annotations

import pytest

from cauditd.containers.docker import container_info, started_ns


@pytest.mark.parametrize(("state", "expected"), [
    ({"StartedAt": "2026-12-01T23:50:01.123456789Z"}, 1_796_169_001_123_456_789),
    ({"StartedAt": "2026-12-01T23:50:01Z"}, 1_796_169_001_000_000_000),
    ({"StartedAt": "0001-01-01T00:00:00Z"}, 0),  # created, never started
    ({"StartedAt": "not a time"}, 0),
    ({"StartedAt": None}, 0),
    ({}, 0),
])  # fmt: skip
def test_started_at(state: dict[str, object], expected: int) -> None:
    assert started_ns(state) == expected


def test_container_info_carries_the_start_time() -> None:
    doc = {"Id": "ab" * 32, "Name": "/web", "Config": {"Image": "nginx:1"},
           "State": {"Pid": 42, "StartedAt": "2026-12-01T23:50:01.5Z"}}  # fmt: skip
    info = container_info(doc)
    assert (info.name, info.pid, info.started_ns) == ("web", 42, 1_796_169_001_500_000_000)
