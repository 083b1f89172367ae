"""A plain, non-editable `pip install .` finds its probes and default rules."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def test_wheel_install_ships_probes_and_rules(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run(
        ["/usr/bin/python3", "-m", "venv", "--system-site-packages", str(venv)], check=True
    )
    pip = subprocess.run(
        [venv / "bin" / "pip", "install", "-q", "--no-warn-script-location", str(REPO)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert pip.returncode == 0, pip.stderr[-2000:]
    code = (
        "import cauditd.resources as r, pathlib, json;"
        "print(json.dumps([str(r.probes_dir()), str(r.rules_dir()), "
        "sorted(p.name for p in r.probes_dir().iterdir()), "
        "sorted(p.name for p in r.rules_dir().glob('*.toml'))]))"
    )
    out = subprocess.run(
        [venv / "bin" / "python", "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=True,
    )
    probes, rules, probe_files, rule_files = __import__("json").loads(out.stdout)
    assert "site-packages/cauditd/_data/probes" in probes
    assert "site-packages/cauditd/_data/rules" in rules
    assert {p.name for p in (REPO / "probes").iterdir()} == set(probe_files)
    assert {p.name for p in (REPO / "rules").glob("*.toml")} == set(rule_files)
    dump = subprocess.run(
        [venv / "bin" / "cauditd", "run", "--dump-bpf"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert dump.returncode == 0, dump.stderr
    assert "TRACEPOINT_PROBE(sched, sched_process_exec)" in dump.stdout
    assert sys.executable  # the test venv itself is untouched
