"""Fixtures of the fleet tests: real nats-server processes on loopback, started here."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import unavailable
from tests.fleet.cluster import Cluster, nats_server_problem


def _cluster(root: Path, size: int) -> Iterator[Cluster]:
    problem = nats_server_problem()
    if problem:
        unavailable(problem)
    cluster = Cluster(root, size=size)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def nats_single(tmp_path: Path) -> Iterator[Cluster]:
    """One JetStream server on 127.0.0.1."""
    yield from _cluster(tmp_path / "nats", 1)


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Three JetStream servers in one cluster on 127.0.0.1 (replicas 3 possible)."""
    yield from _cluster(tmp_path / "nats", 3)


@pytest.fixture
async def js_client(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """A JetStream context on whichever cluster the test uses."""
    import nats

    cluster = request.getfixturevalue("nats_cluster" if "nats_cluster" in request.fixturenames
                                      else "nats_single")
    nc = await nats.connect(servers=cluster.urls, max_reconnect_attempts=-1,
                            reconnect_time_wait=0.5)
    try:
        yield nc.jetstream(timeout=10)
    finally:
        await nc.close()
