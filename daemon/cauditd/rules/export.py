"""Write a RuleBook as a cauditd TOML rule file (`cauditd rules import`).

What loads is written (lists, the macros that compile, the rules that compile, with their
exceptions); what does not is written as a comment saying why, so the file explains itself.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from cauditd.rules.builder import Build
from cauditd.rules.model import ExceptionDef, RuleBook, RuleSpec

_BARE_KEY = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def toml_string(text: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's; DEL must be escaped too)."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def toml_text(text: str) -> str:
    """A text as a multi-line literal string when it spans lines and can be one, else a basic
    string."""
    plain = all(ch.isprintable() or ch in "\n\t" for ch in text)
    if "\n" in text and plain and "'''" not in text and not text.endswith("'"):
        return f"'''\n{text}'''"
    return toml_string(text)


def toml_array(items: list[str], width: int = 100) -> str:
    """An array of strings, on one line when short, else wrapped four spaces in."""
    one_line = toml_value(items)
    if len(one_line) <= width:
        return one_line
    rows, row = [], "   "
    for item in map(toml_string, items):
        if len(row) + len(item) + 2 > width and row.strip():
            rows.append(row)
            row = "   "
        row += f" {item},"
    rows.append(row)
    return "[\n" + "\n".join(rows) + "\n]"


def toml_key(name: str) -> str:
    return name if name and set(name) <= _BARE_KEY else toml_string(name)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        body = ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items())
        return "{ " + body + " }" if body else "{}"
    return toml_string(str(value))


def to_toml(book: RuleBook, result: Build, sources: Iterable[str]) -> str:
    """The book as TOML: every list, the macros and rules that compiled, and a comment per
    thing skipped."""
    loaded = {rule.name for rule in result.rules}
    lines = [f"# Imported by `cauditd rules import` from {', '.join(sources)}.",
             f"# {len(loaded)} rules load; {len(book.rules) - len(loaded)} skipped "
             "(see the comments)."]
    lines += [f"# {line}" for notice in result.notices for line in str(notice).splitlines()]
    lines += ["", "[lists]"]
    lines += [f"{toml_key(name)} = {toml_array(entry.items)}" for name, entry in
              book.lists.items()]
    lines += ["", "[macros]"]
    for name, macro in book.macros.items():
        line = f"{toml_key(name)} = {toml_text(macro.condition.text)}"
        if name in result.broken_macros:
            line = "\n".join(f"# {part}" for part in line.splitlines())
        lines.append(line)
    for spec in book.rules.values():
        if spec.name in loaded:
            lines += ["", *_rule_lines(spec)]
    return "\n".join(lines) + "\n"


def _rule_lines(spec: RuleSpec) -> list[str]:
    values = spec.values
    lines = ["[[rules]]", f"name = {toml_string(spec.name)}"]
    for key in ("desc", "condition", "output", "priority", "tags", "enabled", "source"):
        if key not in values:
            continue
        value = values[key]
        if key in ("condition", "output"):
            value = value.text
        elif key == "priority":
            value = value.name.lower()
        text = toml_text(value) if isinstance(value, str) else toml_value(value)
        lines.append(f"{key} = {text}")
    exceptions = values.get("exceptions", ())
    if exceptions:
        lines.append("exceptions = [")
        lines += [f"    {toml_value(_exception(exc))}," for exc in exceptions]
        lines.append("]")
    return lines


def _exception(exc: ExceptionDef) -> dict[str, Any]:
    doc: dict[str, Any] = {"name": exc.name}
    if exc.fields is not None:
        doc["fields"] = exc.fields if isinstance(exc.fields, str) else list(exc.fields)
        doc["comps"] = exc.comps if isinstance(exc.comps, str) else list(exc.comps or ())
    doc["values"] = list(exc.values)
    return doc
