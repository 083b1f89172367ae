"""The Falco reader: a Falco rules YAML file (lists, macros, rules, exceptions, append and
override, enabled, requirements) as model entries with file:line.

Its rules and macros are lenient (see rules.builder): one that cannot load is skipped with a
notice. The YAML is composed once with PyYAML to keep each item's and key's line.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from cauditd.rules.errors import RuleError, SchemaError, TomlSyntaxError, Where
from cauditd.rules.model import (
    APPEND,
    APPENDABLE,
    DEFINE,
    REPLACE,
    ListEntry,
    MacroEntry,
    Requirement,
    RuleEntry,
    RuleFile,
)

# Keys of a Falco rule cauditd accepts and does not use (capture is Falco's pcap capture;
# skip-if-unknown-filter is moot: a rule that cannot load is always skipped here).
IGNORED_RULE_KEYS = frozenset(("warn_evttypes", "skip-if-unknown-filter", "capture",
                               "capture_duration"))
RULE_KEYS = frozenset(("rule", "desc", "condition", "output", "priority", "tags", "enabled",
                       "source", "exceptions", "append", "override")) | IGNORED_RULE_KEYS
MAX_BYTES = 16 << 20


MAX_NESTING = 64  # Falco's files nest 4 deep; libyaml's composer crashes the process far deeper
MAX_INDENT = 512


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """PyYAML's safe loader (libyaml's when there), reading a bare `=` as the string "=" as
    Falco does (`comps: [=, in]`), not as YAML 1.1's value key."""


_Loader.add_constructor("tag:yaml.org,2002:value", yaml.SafeLoader.construct_yaml_str)


def read_falco(path: Path) -> RuleFile:
    """One Falco rules file as model entries; problems are collected, never raised."""
    result = RuleFile(str(path))
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
        if len(raw) > MAX_BYTES:
            raise ValueError(f"larger than {MAX_BYTES >> 20} MiB")
        data, node = _compose(raw.decode())
    except OSError as exc:
        result.errors.append(TomlSyntaxError(exc.strerror or str(exc), Where(str(path))))
        return result
    except (yaml.YAMLError, UnicodeDecodeError, ValueError) as exc:
        line = getattr(exc, "line", getattr(getattr(exc, "problem_mark", None), "line", -1) + 1)
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        result.errors.append(TomlSyntaxError(f"not valid YAML: {message}",
                                             Where(str(path), line)))
        return result
    if data is None:
        return result
    if not isinstance(data, list) or not isinstance(node, yaml.SequenceNode):
        result.errors.append(SchemaError("a Falco rules file is a list of items (- rule: ..., "
                                         "- macro: ..., - list: ...)", Where(str(path), 1)))
        return result
    for item, item_node in zip(data, node.value, strict=True):
        _read_item(item, item_node, result)
    return result


def _compose(text: str) -> tuple[Any, yaml.Node | None]:
    """The document and its node tree (for line numbers). Anchors and aliases are refused: a
    few nested aliases can stand for an exponential number of list items; so is nesting deeper
    than MAX_NESTING, before the parser sees it."""
    _refuse_deep_nesting(text)
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, None
        _refuse_aliases(node)
        return loader.construct_document(node), node
    finally:
        loader.dispose()


class NestingError(ValueError):
    """YAML nested too deeply to hand to the parser; `line` is where."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.line = line


def _refuse_deep_nesting(text: str) -> None:
    """NestingError when flow collections ([ and {, outside quoted scalars) nest deeper than
    MAX_NESTING or a line is indented past MAX_INDENT (block nesting)."""
    depth, quote, i, line = 0, "", 0, 1
    while i < len(text):
        ch = text[i]
        if ch == "\n":
            line += 1
            if len(text) - i > MAX_INDENT and not text[i + 1 : i + 1 + MAX_INDENT].strip(" "):
                raise NestingError(f"indented more than {MAX_INDENT} columns", line)
        if quote:
            if ch == "\\" and quote == '"':
                i += 1
            elif ch == quote:
                if quote == "'" and text[i + 1 : i + 2] == "'":
                    i += 1
                else:
                    quote = ""
        elif ch == "#" and (i == 0 or text[i - 1] in " \t\n"):
            end = text.find("\n", i)
            i = (end if end >= 0 else len(text)) - 1
        elif ch in "'\"" and (i == 0 or text[i - 1] in " \t\n[{,:-"):
            quote = ch
        elif ch in "[{":
            depth += 1
            if depth > MAX_NESTING:
                raise NestingError(f"nested more than {MAX_NESTING} deep", line)
        elif ch in "]}":
            depth = max(0, depth - 1)
        i += 1


def _refuse_aliases(root: yaml.Node) -> None:
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            raise NestingError("YAML aliases are not supported", node.start_mark.line + 1)
        seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            stack.extend(n for pair in node.value for n in pair)


def _read_item(item: Any, node: yaml.Node, result: RuleFile) -> None:
    where = Where(result.path, node.start_mark.line + 1)
    if not isinstance(item, dict) or not isinstance(node, yaml.MappingNode):
        result.errors.append(SchemaError("each item must be a mapping", where))
        return
    lines = {str(k.value): (k.start_mark.line + 1, _text_line(v)) for k, v in node.value}
    try:
        if "required_engine_version" in item:
            version = str(item["required_engine_version"])
            result.requirements.append(Requirement("engine", "falco", version, where))
        elif "required_plugin_versions" in item:
            result.requirements.extend(_plugins(item["required_plugin_versions"], where))
        elif "list" in item:
            result.entries.append(_list(item, where))
        elif "macro" in item:
            result.entries.append(_macro(item, where, lines))
        elif "rule" in item:
            result.entries.append(_rule(item, where, lines))
        else:
            keys = ", ".join(sorted(map(str, item)))
            raise SchemaError(f"not a rule, macro, list or requirement (keys: {keys})", where)
    except RuleError as exc:
        result.errors.append(exc)


def _text_line(node: yaml.Node) -> int:
    """The line a scalar's text starts on (the next one for block scalars: > and |)."""
    line: int = node.start_mark.line + 1
    return line + 1 if isinstance(node, yaml.ScalarNode) and node.style in (">", "|") else line


def _plugins(value: Any, where: Where) -> list[Requirement]:
    if not isinstance(value, list):
        raise SchemaError("required_plugin_versions must be a list", where)
    found = []
    for plugin in value:
        if not isinstance(plugin, Mapping) or not isinstance(plugin.get("name"), str):
            raise SchemaError("each required plugin needs a 'name'", where)
        found.append(Requirement("plugin", plugin["name"], str(plugin.get("version", "")),
                                 where))
    return found


def _mode(item: Mapping[str, Any], key: str, where: Where) -> str:
    """define, append or replace, from Falco's `append: true` or `override: {key: mode}`."""
    if item.get("append") is True:
        return APPEND
    override = item.get("override")
    if override is None:
        return DEFINE
    if not isinstance(override, Mapping) or set(override) != {key} \
            or override[key] not in (APPEND, REPLACE):
        raise SchemaError(f"override must be {{{key}: append}} or {{{key}: replace}}", where)
    return str(override[key])


def _list(item: Mapping[str, Any], where: Where) -> ListEntry:
    name = str(item["list"])
    where = Where(where.file, where.line, f"list {name!r}")
    items = item.get("items") or []
    if not isinstance(items, list):
        raise SchemaError("items must be a list", where)
    entry = ListEntry.from_dict(name, {"items": items}, where)
    entry.items = [unquote(v) for v in entry.items]
    entry.mode = APPEND if _mode(item, "items", where) == APPEND else DEFINE
    return entry


def _macro(item: Mapping[str, Any], where: Where,
           lines: Mapping[str, tuple[int, int]]) -> MacroEntry:
    name = str(item["macro"])
    where = Where(where.file, where.line, f"macro {name!r}")
    data = {"condition": item.get("condition")}
    entry = MacroEntry.from_dict(name, data, where, lines.get("condition", (0, 0))[1],
                                 lenient=True)
    entry.mode = APPEND if _mode(item, "condition", where) == APPEND else DEFINE
    return entry


def _rule(item: Mapping[str, Any], where: Where,
          lines: Mapping[str, tuple[int, int]]) -> RuleEntry:
    name = item["rule"]
    unknown = sorted(set(map(str, item)) - RULE_KEYS)
    if unknown:
        raise SchemaError(f"unknown key {unknown[0]!r}", Where(where.file, where.line,
                                                                f"rule {name!r}"))
    data: dict[str, Any] = {"name": name if isinstance(name, str) else str(name)}
    data.update((k, v) for k, v in item.items()
                if k not in ("rule", "append", "override") and k not in IGNORED_RULE_KEYS)
    if item.get("append") is True:
        data["override"] = _legacy_append(data, where)
    elif "override" in item:
        data["override"] = item["override"]
    texts = {key: lines[key][1] for key in ("condition", "output") if key in lines}
    return RuleEntry.from_dict(data, where, texts, lenient=True)


def _legacy_append(data: Mapping[str, Any], where: Where) -> dict[str, str]:
    """Falco's `append: true` on a rule: what it gives is appended (enabled is set)."""
    keys = [k for k in data if k not in ("name", "enabled")]
    for key in keys:
        if key not in APPENDABLE:
            raise SchemaError(f"append: true cannot append {key!r}",
                              Where(where.file, where.line, f"rule {data['name']!r}"))
    return dict.fromkeys(keys, APPEND)


def unquote(item: str) -> str:
    """A list item as Falco reads it: items are condition tokens, so '"a b"' is the string
    a b (backslash escapes as in conditions) and 'a' is a."""
    if len(item) < 2 or item[0] not in "\"'" or item[-1] != item[0]:
        return item
    quote, out, i = item[0], [], 1
    while i < len(item) - 1:
        ch = item[i]
        if ch == "\\" and i + 1 < len(item) - 1 and item[i + 1] in (quote, "\\"):
            out.append(item[i + 1])
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)
