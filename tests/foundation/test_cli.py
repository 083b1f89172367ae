"""The `cauditd` command line: help, version, rules check, fields, the generated program."""

from __future__ import annotations

from pathlib import Path

import pytest

from cauditd import __version__, cli


def test_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for command in ("run", "events", "check-config", "rules", "fields", "version"):
        assert command in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["version"]) == 0
    assert capsys.readouterr().out.strip() == f"cauditd {__version__}"


def test_rules_check_default_rules_pass(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["rules", "check"]) == 0
    assert ": ok" in capsys.readouterr().out


def test_rules_check_reports_every_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a.toml").write_text(
        '[[rules]]\nname = "one"\ncondition = "proc.nme = sh"\noutput = "x"\npriority = "warning"\n'
    )
    (tmp_path / "b.toml").write_text(
        '[[rules]]\nname = "two"\ncondition = "proc.name = sh"\noutput = "x"\npriority = "loud"\n'
    )
    assert cli.main(["rules", "check", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "a.toml" in err and "unknown field 'proc.nme'" in err
    assert "b.toml" in err and "unknown priority 'loud'" in err


def test_fields_lists_registry(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["fields"]) == 0
    out = capsys.readouterr().out
    for name in ("proc.name", "container.id", "fd.name", "evt.type"):
        assert name in out


def test_dump_bpf_prints_the_whole_program(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run", "--dump-bpf"]) == 0
    out = capsys.readouterr().out
    assert "TRACEPOINT_PROBE(sched, sched_process_exec)" in out
    assert '#include "' not in out.split("#include <", 1)[0]
