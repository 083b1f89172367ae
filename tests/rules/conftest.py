"""Rule unit tests read no real /proc: the fields that read it (rules.procfs) see a fake tree."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cauditd.rules import procfs
from tests.rules.fakeproc import FakeProc


@pytest.fixture(autouse=True)
def fake_proc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeProc]:
    """An empty fake /proc for every test; tests that need processes add them."""
    root = tmp_path / "proc"
    root.mkdir()
    monkeypatch.setattr(procfs, "PROC", str(root))
    procfs.forget()
    yield FakeProc(root)
    procfs.forget()
