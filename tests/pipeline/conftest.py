"""A real FindingStore for the pipeline tests (detector, budgets)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cauditd.config import StoreConfig
from cauditd.store import FindingStore


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[FindingStore]:
    store = FindingStore(tmp_path / "findings.db", StoreConfig(batch_ms=1))
    await store.start()
    yield store
    await store.stop()
