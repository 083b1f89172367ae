"""Retention by count never deletes Critical-or-above findings to make room for lesser ones,
and says what it deleted (log and stats)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from cauditd.config import StoreConfig
from cauditd.findings import Priority
from cauditd.store import FindingFilter, FindingStore
from tests.fakes import make_finding


async def test_a_flood_of_lesser_findings_never_erases_critical_ones(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = FindingStore(tmp_path / "f.db", StoreConfig(max_findings=100))
    await store.start()
    try:
        severe = [store.add(make_finding("Kernel module load", priority=Priority.CRITICAL)).id
                  for _ in range(30)]
        for _ in range(500):  # later and lesser: a loop that wants the evidence gone
            store.add(make_finding("Write below etc", priority=Priority.ERROR))
        await store.flush()
        with caplog.at_level(logging.WARNING, logger="cauditd.retention"):
            assert await store.apply_retention() == 430
        kept, _ = await store.query(FindingFilter(limit=1000))
        assert len(kept) == 100
        assert {f.id for f in kept} >= set(severe)
        assert "retention deleted 430 findings over max_findings (100)" in caplog.text
        stats = store.stats()["retention"]
        assert stats["deleted_by_count"] == 430 and stats["deleted_severe_by_count"] == 0

        for _ in range(90):  # Critical findings alone over the limit: the oldest of them go
            store.add(make_finding("Kernel module load", priority=Priority.ALERT))
        await store.flush()
        assert await store.apply_retention() == 90  # 70 lesser, then 20 of the 120 severe
        kept, _ = await store.query(FindingFilter(limit=1000))
        assert len(kept) == 100 and all(f.priority <= Priority.CRITICAL for f in kept)
        assert store.stats()["retention"]["deleted_severe_by_count"] == 20
    finally:
        await store.stop()
