"""The systemd unit passes `systemd-analyze verify`; its exposure score is recorded."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, unavailable

UNIT = REPO / "systemd" / "cauditd.service"


@pytest.fixture
def unit(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this checkout's venv (verify checks the binary)."""
    if shutil.which("systemd-analyze") is None:
        unavailable("systemd-analyze missing (apt-get install systemd)")
    text = UNIT.read_text().replace(
        "/opt/cauditd/venv/bin/cauditd", f"{Path(sys.executable).parent}/cauditd"
    )
    path = tmp_path / "cauditd.service"
    path.write_text(text)
    return path


def test_verify(unit: Path) -> None:
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


def test_security_exposure_is_recorded(unit: Path, record_property: pytest.RecordProperty) -> None:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(unit)], capture_output=True, text=True
    )
    match = re.search(r"Overall exposure level for \S+: ([\d.]+)", result.stdout + result.stderr)
    assert match, result.stdout[-500:]
    exposure = float(match.group(1))
    record_property("systemd_exposure", exposure)
    print(f"systemd exposure: {exposure}")
    assert exposure < 5.0, "hardening regressed: the unit should stay in systemd's OK band"


def test_unit_is_notify_with_watchdog() -> None:
    text = UNIT.read_text()
    for line in ("Type=notify", "WatchdogSec=", "Restart=on-failure", "NoNewPrivileges=yes"):
        assert line in text
