"""Falco rule files (YAML) read directly: lists, macros, rules, exceptions, append, override,
enabled, requirements and sources, each rule's verdict checked against Falco's on synthetic
events; what cannot load is skipped with one line, the rest loads; import writes TOML that loads
to the same rules.

The fixtures in tests/rules/falco/ are written for these tests in Falco's format.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cauditd import cli
from cauditd.events import HOST, ContainerInfo, Event, ProcessInfo
from cauditd.findings import Priority
from cauditd.rules import RuleEngine, RuleSetError, check, load_ruleset
from cauditd.rules.loader import compile_paths
from tests.rules.helpers import write
from tests.rules.synth import CONTAINER, connect, execve

FIXTURES = Path(__file__).parent / "falco"
BASE, MORE, SKIPS = (FIXTURES / f"rules_{n}.yaml" for n in ("base", "more", "skips"))
ALLOWED = ContainerInfo(id="ab" * 32, name="allowed", image="x:1")


def parent(exe: str) -> ProcessInfo:
    return ProcessInfo(pid=4100, ppid=4000, exe=exe, args=(exe.rsplit("/", 1)[-1],),
                       container_id=CONTAINER.id)


def fired(paths: list[Path], event: Event) -> list[str]:
    engine = RuleEngine(load_ruleset(paths), suppress_window_s=0)
    return [f.rule for f in engine.match(event)]


# (event, the rules Falco fires on it with rules_base.yaml then rules_more.yaml)
VERDICTS: list[tuple[str, Event, list[str]]] = [
    ("bash", execve("/bin/bash"), ["Fixture shell"]),
    ("appended-list-item", execve("/bin/ksh"), ["Fixture shell"]),
    ("list-in-list", execve("/bin/zsh"), ["Fixture shell"]),
    ("quoted-item", execve("/usr/bin/fish"), ["Fixture shell"]),
    ("not-a-shell", execve("/bin/ls"), []),
    ("on-the-host", execve("/bin/sh", container=HOST), []),
    ("appended-macro", execve("/bin/sh", container=ALLOWED), []),
    ("exception-row", execve("/bin/sh", "sh", "-c", "/opt/known x",
                             parent=parent("/usr/bin/python3")), []),
    ("exception-row-other-parent", execve("/bin/sh", "sh", "-c", "/opt/known x",
                                          parent=parent("/usr/bin/perl")), ["Fixture shell"]),
    ("appended-exception-values", execve("/bin/sh", "sh", "-c", "npm i",
                                         parent=parent("/usr/bin/node")), []),
    ("single-field-exception", execve("/bin/sh", parent=parent("/usr/sbin/cron")), []),
    ("exception-by-list-name", execve("/bin/sh", parent=parent("/usr/sbin/anacron")), []),
    ("number-list", connect("10.0.0.1", 4444), ["Fixture port"]),
    ("number-list-miss", connect("10.0.0.1", 8080), []),
    ("appended-condition", execve("/bin/nc", "nc", "-e", "/bin/sh", "h", "1"),
     ["Fixture appended"]),
    ("appended-condition-miss", execve("/bin/nc", "nc", "h", "1"), []),
    ("replaced", execve("/usr/bin/socat"), ["Fixture replaced"]),
    ("disabled-later", execve("/bin/true"), []),
    ("enabled-later", execve("/bin/false"), ["Fixture enabled later"]),
]


@pytest.mark.parametrize(("event", "expected"), [v[1:] for v in VERDICTS],
                         ids=[v[0] for v in VERDICTS])
def test_verdicts_match_falco(event: Event, expected: list[str]) -> None:
    assert fired([BASE, MORE], event) == expected


def test_rule_keys_as_falco_merges_them() -> None:
    rules = {r.name: r for r in load_ruleset([BASE, MORE]).rules}
    replaced = rules["Fixture replaced"]
    assert replaced.priority is Priority.CRITICAL
    assert replaced.output.text == "replaced: %proc.cmdline"
    assert rules["Fixture port"].priority is Priority.INFORMATIONAL
    assert rules["Fixture shell"].tags == ("fixture", "shell")
    assert replaced.tags == ("replaced",)
    assert rules["Fixture shell"].description.startswith("A shell started")
    assert not rules["Fixture disabled later"].enabled
    assert rules["Fixture appended"].condition.endswith('and proc.args contains "-e"')


def test_what_cannot_load_is_skipped_with_one_line_each() -> None:
    result = compile_paths([SKIPS])
    assert result.errors == []
    assert [r.name for r in result.rules] == ["Fixture loads"]
    lines = [str(n) for n in result.notices]
    path = str(SKIPS)
    expected = [
        f"{path}:2: requires Falco engine 99.0.0",
        f"{path}:3: requires plugin 'k8saudit' 0.7.0, which cauditd does not have",
        f"{path}:8: macro 'fixture_broken': skipped: unknown field 'proc.no_such_field'",
        f"{path}:15: rule 'Fixture unknown field': skipped: unknown field 'proc.unheard_of'",
        f"{path}:19: rule 'Fixture broken macro': skipped: uses macro 'fixture_uses_broken', "
        "which does not load: it uses macro 'fixture_broken'",
        f"{path}:25: rule 'Fixture other source': skipped: source 'k8s_audit' is not one "
        "cauditd has",
    ]
    for want in expected:
        assert any(line.startswith(want) for line in lines), (want, lines)
    assert len(lines) == len(expected)
    assert all("\n" not in line for line in lines)
    assert check([SKIPS]) == []


@pytest.mark.parametrize(("text", "message", "line"), [
    ("- rule: x\n  condition: [unclosed\n", "not valid YAML", 3),
    ("rule: x\n", "a Falco rules file is a list of items", 1),
    ("- list: a\n  items: &x [b]\n- list: c\n  items: *x\n", "aliases are not supported", 0),
    ("- nothing: here\n", "not a rule, macro, list or requirement", 1),
    ("- rule: x\n  condition: evt.type = execve\n  colour: red\n", "unknown key 'colour'", 1),
    ("- macro: m\n  condition: a\n  override:\n    items: append\n",
     "override must be {condition: append}", 1),
])
def test_broken_files_are_errors(tmp_path: Path, text: str, message: str, line: int) -> None:
    path = write(tmp_path, "bad.yaml", text)
    errors = check([path])
    assert len(errors) == 1 and message in str(errors[0]), errors
    if line:
        assert str(errors[0]).startswith(f"{path}:{line}:"), str(errors[0])
    with pytest.raises(RuleSetError):
        load_ruleset([path])


def test_toml_and_falco_files_mix_in_one_model(tmp_path: Path) -> None:
    toml = write(tmp_path, "z.toml", '[lists]\nfixture_shells = { items = ["dash"], '
                 'override = "append" }\n')
    assert fired([BASE, toml], execve("/bin/dash")) == ["Fixture shell"]
    write(tmp_path, "a.yaml", BASE.read_text())
    assert fired([tmp_path], execve("/bin/dash")) == ["Fixture shell"]  # a.yaml, then z.toml


def test_import_writes_toml_that_loads_to_the_same_verdicts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "imported.toml"
    assert cli.main(["rules", "import", str(BASE), str(MORE), str(SKIPS), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "rule 'Fixture unknown field': skipped" in err
    assert "imported 7 rules, skipped 3" in err
    assert check([out]) == []
    for _label, event, expected in VERDICTS:
        assert fired([out], event) == expected
    assert "Fixture loads" in {r.name for r in load_ruleset([out]).rules}


def test_rules_check_reports_skips_and_strict_fails_on_them(
    capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["rules", "check", str(SKIPS)]) == 0
    captured = capsys.readouterr()
    assert "1 rules load; skipped: 3 rules, 1 macros" in captured.out
    assert "skipped: unknown field 'proc.unheard_of'" in captured.err
    assert cli.main(["rules", "check", "--strict", str(SKIPS)]) == 1
