"""Rule files: lists, macros, overrides, exceptions, and every error message with file:line."""

from __future__ import annotations

from pathlib import Path

import pytest

from cauditd.findings import Priority
from cauditd.rules import RuleSetError, check, load_ruleset
from cauditd.rules.errors import (
    MacroCycleError,
    OverrideError,
    PriorityError,
    RuleError,
    SchemaError,
    TomlSyntaxError,
    TypeMismatchError,
    UnknownFieldError,
    UnknownMacroError,
)
from tests.rules.helpers import engine_for, rule_names, rule_toml, write
from tests.rules.synth import BASH, execve

BASE = """
[lists]
shells = ["bash", "sh"]
[macros]
spawned = "evt.type in (execve, execveat)"
[[rules]]
name = "shell"
condition = "spawned and proc.name in (shells)"
output = "shell %proc.name in %container.name"
priority = "warning"
tags = ["shell"]
"""


def names_for(tmp: Path, *texts: str, event=None) -> list[str]:  # type: ignore[no-untyped-def]
    paths = [write(tmp, f"{i}.toml", t) for i, t in enumerate(texts)]
    return rule_names(engine_for(paths), event or execve("/bin/zsh", parent=BASH))


@pytest.mark.parametrize(("override", "fires"), [
    ("", False),
    ('[lists]\nshells = { items = ["zsh"], override = "append" }', True),
    ('[lists]\nshells = ["zsh"]', True),
    ('[macros]\nspawned = { condition = "and proc.pid = 1", override = "append" }', False),
    ('[lists]\nshells = ["zsh"]\n[[rules]]\nname = "shell"\nenabled = false', False),
    ('[lists]\nshells = ["zsh"]\n[[rules]]\nname = "shell"\ncondition = "and proc.pid = 1"\n'
     'override = { condition = "append" }', False),
    ('[[rules]]\nname = "shell"\ncondition = "spawned"\noverride = { condition = "replace" }',
     True),
    ('[lists]\nshells = ["zsh"]\n[[rules]]\nname = "shell"\nexceptions = [{ name = "ok", '
     'fields = ["proc.name", "proc.pname"], comps = ["=", "in"], values = [["zsh", ["bash"]]] }]'
     '\noverride = { exceptions = "append" }', False),
])
def test_overrides(tmp_path: Path, override: str, fires: bool) -> None:
    assert (names_for(tmp_path, BASE, override) == ["shell"]) is fires


def test_exceptions_single_field_and_append_values(tmp_path: Path) -> None:
    base = BASE.replace('tags = ["shell"]', 'tags = ["shell"]\nexceptions = [{ name = "known", '
                        'fields = "proc.exepath", values = ["/bin/sh"] }]')
    base = base.replace('"bash", "sh"', '"bash", "sh", "zsh"')
    assert names_for(tmp_path, base, event=execve("/bin/sh")) == []
    assert names_for(tmp_path, base, event=execve("/bin/zsh")) == ["shell"]
    more = ('[[rules]]\nname = "shell"\nexceptions = [{ name = "known", values = ["/bin/zsh"] }]'
            '\noverride = { exceptions = "append" }')
    assert names_for(tmp_path, base, more, event=execve("/bin/zsh")) == []


def test_tags_append_and_priority_replace(tmp_path: Path) -> None:
    more = ('[[rules]]\nname = "shell"\ntags = ["extra"]\npriority = "critical"\n'
            'override = { tags = "append", priority = "replace" }')
    ruleset = load_ruleset([write(tmp_path, "a.toml", BASE), write(tmp_path, "b.toml", more)])
    (rule,) = ruleset.rules
    assert rule.tags == ("shell", "extra") and rule.priority is Priority.CRITICAL


def test_min_priority_drops_less_severe(tmp_path: Path) -> None:
    path = write(tmp_path, "a.toml", BASE)
    assert len(load_ruleset([path], min_priority=Priority.ERROR)) == 0
    assert len(load_ruleset([path], min_priority=Priority.WARNING)) == 1


def test_directory_loads_in_name_order_and_missing_dir_is_empty(tmp_path: Path) -> None:
    write(tmp_path, "a.toml", BASE)
    write(tmp_path, "b.toml", '[lists]\nshells = { items = ["zsh"], override = "append" }')
    engine = engine_for([tmp_path, tmp_path / "rules.d"])
    assert rule_names(engine, execve("/bin/zsh")) == ["shell"]


ERROR_CASES: list[tuple[str, type[RuleError], str, int]] = [
    ('[[rules]]\nname = "x\n', TomlSyntaxError, "not valid TOML", 2),
    (rule_toml("evt.type = execve", priority="urgent"), PriorityError, "unknown priority 'urgent'",
     1),
    (rule_toml("proc.nme = x"), UnknownFieldError, "unknown field 'proc.nme'", 3),
    (rule_toml("evt.type = execve\n  and nomacro"), UnknownMacroError, "unknown macro 'nomacro'",
     4),
    (rule_toml("evt.type = execve and (proc.name = x"), RuleError, "unbalanced parenthesis", 3),
    (rule_toml("proc.pid = x"), TypeMismatchError, "type mismatch", 3),
    ('[macros]\na = "b"\nb = "evt.type = execve and a"\n' + rule_toml("a"), MacroCycleError,
     "macro cycle", 3),
    (rule_toml("evt.type = execve", output="x %proc.nam"), UnknownFieldError,
     "unknown field 'proc.nam' in output", 4),
    ('[[rules]]\nname = "x"\ncondition = "evt.type = execve"\n', SchemaError,
     "rule needs 'output'", 1),
    (rule_toml("evt.type = execve", extra="colour = 1"), SchemaError, "unknown key 'colour'", 1),
    (rule_toml("evt.type = execve", extra='source = "k8s"'), SchemaError, "source must be", 1),
    (rule_toml("evt.type = flow_new"), TypeMismatchError, "never comes from source 'syscall'",
     1),
    ('[[rules]]\nname = "nope"\ncondition = "x"\noverride = { condition = "append" }',
     OverrideError, "override of a rule that is not defined", 1),
    ('[lists]\nl = { items = ["a"], override = "append" }', OverrideError,
     "list that is not defined", 2),
    ('[lists]\nl = { items = ["a"], override = "merge" }', OverrideError,
     "must be 'append' or 'replace'", 2),
    (rule_toml("evt.type = execve", extra='threshold = { count = 0 }'), SchemaError,
     "threshold.count", 1),
    (rule_toml("evt.type = execve", extra='threshold = { count = 3, within = "soon" }'),
     SchemaError, "bad duration", 1),
    (rule_toml("evt.type = execve", extra='threshold = { count = 3, by = ["proc.x"] }'),
     UnknownFieldError, "unknown field 'proc.x' in threshold.by", 1),
    (rule_toml("evt.type = execve", extra='exceptions = [{ name = "e", fields = ["proc.name"], '
               'values = [["a", "b"]] }]'), SchemaError, "each value must have 1 items", 1),
    ("[tables]\nx = 1", SchemaError, "unknown table 'tables'", 1),
    ("[lists]\nx = " + "[" * 100_000 + "]" * 100_000, TomlSyntaxError, "nested too deeply", 0),
]


@pytest.mark.parametrize(("text", "error", "message", "line"), ERROR_CASES)
def test_error_messages(tmp_path: Path, text: str, error: type[RuleError], message: str,
                        line: int) -> None:
    path = write(tmp_path, "bad.toml", "\n" * 0 + text)
    errors = check([path])
    assert len(errors) == 1, [str(e) for e in errors]
    (err,) = errors
    assert isinstance(err, error)
    assert message in str(err)
    assert str(err).startswith(f"{path}:{line}: " if line else f"{path}: "), str(err)


def test_check_reports_every_problem_in_every_file(tmp_path: Path) -> None:
    one = write(tmp_path, "one.toml", rule_toml("proc.nme = x", name="a")
                + rule_toml("nomacro", name="b"))
    two = write(tmp_path, "two.toml", rule_toml("proc.pid = x", name="c", priority="loud"))
    errors = check([one, two])
    assert [type(e).__name__ for e in errors] == [
        "UnknownFieldError", "UnknownMacroError", "PriorityError", "TypeMismatchError"]
    assert "rule 'c'" in str(errors[-1])
    with pytest.raises(RuleSetError) as info:
        load_ruleset([one, two])
    assert len(info.value.errors) == 4


def test_caret_points_into_multiline_condition(tmp_path: Path) -> None:
    text = ('[[rules]]\nname = "m"\ncondition = """\nevt.type = execve\n  and proc.nme = x"""\n'
            'output = "o"\npriority = "info"\n')
    (err,) = check([write(tmp_path, "m.toml", text)])
    lines = str(err).splitlines()
    assert lines[0].startswith(f"{tmp_path / 'm.toml'}:5: rule 'm': unknown field")
    assert lines[1:] == ["      and proc.nme = x", "          ^^^^^^^^"]


def test_macros_nested_too_deeply_are_errors_not_a_crash(tmp_path: Path) -> None:
    chain = "".join(f'm{i} = "(m{i + 1} and proc.pid > 0)"\n' for i in range(600))
    text = f'[macros]\n{chain}m600 = "proc.name = x"\n' + rule_toml("evt.type = execve and m0")
    errors = check([write(tmp_path, "deep.toml", text)])
    assert errors and all("too deeply to compile" in str(e) for e in errors)


def test_broken_macro_is_reported_once(tmp_path: Path) -> None:
    text = '[macros]\nm = "proc.nme = x"\n' + rule_toml("m", name="a") + rule_toml("m", name="b")
    errors = check([write(tmp_path, "m.toml", text)])
    assert len(errors) == 1 and "macro 'm'" in str(errors[0])


def test_default_rules_load_cleanly() -> None:
    from cauditd.rules import default_rules_dir

    assert check([default_rules_dir()]) == []
