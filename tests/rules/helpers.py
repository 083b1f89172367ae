"""Helpers for rule tests: write rule files, load and match."""

from __future__ import annotations

from pathlib import Path

from cauditd.events import Event
from cauditd.rules import RuleEngine, RuleSet, load_ruleset
from cauditd.rules.compiler import Compiler
from cauditd.rules.parser import parse_condition


def predicate(condition: str, lists: dict[str, list[str]] | None = None):  # type: ignore[no-untyped-def]
    """Compile one condition with optional named lists."""
    return Compiler({}, lists or {}).compile(parse_condition(condition))


def write(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.write_text(text)
    return path


def rule_toml(condition: str, *, name: str = "r", output: str = "hit %proc.name",
              priority: str = "warning", extra: str = "") -> str:
    return (f"[[rules]]\nname = {name!r}\ncondition = '''{condition}'''\n"
            f"output = {output!r}\npriority = {priority!r}\n{extra}\n")


def engine_for(paths: list[Path], window: float = 0.0, clock=None) -> RuleEngine:  # type: ignore[no-untyped-def]
    ruleset: RuleSet = load_ruleset(paths)
    if clock is None:
        return RuleEngine(ruleset, suppress_window_s=window)
    return RuleEngine(ruleset, suppress_window_s=window, clock=clock)


def rule_names(engine: RuleEngine, event: Event) -> list[str]:
    return [f.rule for f in engine.match(event)]
