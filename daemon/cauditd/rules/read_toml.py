"""The TOML reader: a rule file's [lists], [macros] and [[rules]] as model entries with file:line.

tomllib keeps no line numbers, so the raw text is scanned once for the lines of tables and keys.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from cauditd.rules.errors import RuleError, SchemaError, TomlSyntaxError, Where
from cauditd.rules.model import ListEntry, MacroEntry, RuleEntry, RuleFile

# Spellings the TOML format accepts beside the model's names.
ALIASES = {"rule": "name", "description": "desc"}


class LineIndex:
    """Line numbers of TOML keys: tomllib has none, so the raw text is scanned once."""

    _KEY = re.compile(r"""^\s*("[^"]*"|'[^']*'|[A-Za-z0-9_.-]+)\s*=""")

    def __init__(self, raw: str) -> None:
        self.lines = raw.splitlines()
        self.tables: dict[str, dict[str, int]] = {"lists": {}, "macros": {}}
        self.rules: list[dict[str, int]] = []
        self.text_starts: dict[int, bool] = {}
        self._scan()

    def _scan(self) -> None:
        current: dict[str, int] | None = None
        in_string = ""
        for number, line in enumerate(self.lines, 1):
            if in_string:
                if line.count(in_string) % 2 == 1:
                    in_string = ""
                continue
            stripped = line.strip()
            if stripped.startswith("[[rules]]"):
                current = {"": number}
                self.rules.append(current)
            elif stripped.startswith("["):
                current = self.tables.get(stripped.strip("[] ").split("#")[0].strip())
            elif current is not None and (match := self._KEY.match(line)):
                current.setdefault(match.group(1).strip("\"'"), number)
            for quote in ('"""', "'''"):
                if line.count(quote) % 2 == 1:
                    in_string = quote
                    self.text_starts[number] = line.rstrip().endswith(quote)

    def content_line(self, key_line: int) -> int:
        """First line of a value's text: the next one after an opening triple quote."""
        return key_line + 1 if self.text_starts.get(key_line) else key_line


def read_toml(path: Path) -> RuleFile:
    """One TOML rule file as model entries; problems are collected, never raised."""
    result = RuleFile(str(path))
    try:
        raw = path.read_text()
        doc = tomllib.loads(raw)
    except OSError as exc:
        result.errors.append(TomlSyntaxError(exc.strerror or str(exc), Where(str(path))))
        return result
    except RecursionError:
        result.errors.append(TomlSyntaxError("not valid TOML: nested too deeply",
                                             Where(str(path))))
        return result
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        match = re.search(r"at line (\d+)", str(exc))
        line = int(match.group(1)) if match else 0
        result.errors.append(TomlSyntaxError(f"not valid TOML: {exc}", Where(str(path), line)))
        return result
    _entries(doc, LineIndex(raw), result)
    return result


def _entries(doc: dict[str, Any], index: LineIndex, result: RuleFile) -> None:
    file = result.path
    unknown = sorted(set(doc) - {"lists", "macros", "rules"})
    if unknown:
        result.errors.append(SchemaError(f"unknown table {unknown[0]!r} (known: lists, macros, "
                                         "rules)", Where(file, 1)))
    for kind in ("lists", "macros"):
        table = doc.get(kind, {})
        if not isinstance(table, dict):
            result.errors.append(SchemaError(f"[{kind}] must be a table", Where(file)))
            continue
        for name, value in table.items():
            line = index.tables[kind].get(name, 0)
            where = Where(file, line, f"{kind[:-1]} {name!r}")
            _collect(result, _list if kind == "lists" else _macro, name, value, where,
                     index.content_line(line))
    rules = doc.get("rules", [])
    if not isinstance(rules, list):
        result.errors.append(SchemaError("rules must be [[rules]] tables", Where(file)))
        return
    for i, entry in enumerate(rules):
        keys = index.rules[i] if i < len(index.rules) else {"": 0}
        _collect(result, _rule, entry, Where(file, keys[""]), index, keys)


def _collect(result: RuleFile, read: Any, *args: Any) -> None:
    try:
        result.entries.append(read(*args))
    except RuleError as exc:
        result.errors.append(exc)


def _list(name: str, value: Any, where: Where, line: int) -> ListEntry:
    if isinstance(value, dict):
        _known_keys(value, ("items", "override"), where)
        return ListEntry.from_dict(name, value, where)
    return ListEntry.from_dict(name, {"items": value}, where)


def _macro(name: str, value: Any, where: Where, line: int) -> MacroEntry:
    if isinstance(value, dict):
        _known_keys(value, ("condition", "override"), where)
        return MacroEntry.from_dict(name, value, where, line)
    return MacroEntry.from_dict(name, {"condition": value}, where, line)


def _rule(entry: Any, where: Where, index: LineIndex, keys: dict[str, int]) -> RuleEntry:
    if not isinstance(entry, dict):
        raise SchemaError("a rule must be a table", where)
    data = {ALIASES.get(str(key), str(key)): value for key, value in entry.items()}
    texts = {key: index.content_line(keys.get(key, where.line)) for key in ("condition", "output")}
    return RuleEntry.from_dict(data, where, texts)


def _known_keys(value: dict[str, Any], known: tuple[str, ...], where: Where) -> None:
    extra = sorted(set(value) - set(known))
    if extra:
        raise SchemaError(f"unknown key {extra[0]!r} (known: {', '.join(known)})", where)
