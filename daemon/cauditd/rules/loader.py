"""Load rule files: TOML [lists], [macros], [[rules]] with Falco-style overrides, then compile.

Every problem in every file is collected as a RuleError with file:line; `load_ruleset` raises
them together as RuleSetError, `check` returns them.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cauditd
from cauditd.findings import Priority
from cauditd.rules.compiler import BrokenMacro, Compiler, Pred
from cauditd.rules.errors import (
    OverrideError,
    PriorityError,
    RuleError,
    RuleSetError,
    SchemaError,
    TomlSyntaxError,
    TypeMismatchError,
    UnknownFieldError,
    Where,
)
from cauditd.rules.fields import EVENT_TYPES, OPEN_TYPES, lookup
from cauditd.rules.output import parse_output
from cauditd.rules.parser import Condition, parse_condition
from cauditd.rules.prefilter import CONNECT_TYPES, DUP_TYPES, ClauseDeriver, Clauses
from cauditd.rules.ruleset import Rule, RuleSet
from cauditd.rules.threshold import Threshold, ThresholdSpec, parse_duration

RULE_KEYS = frozenset((
    "name", "rule", "desc", "description", "condition", "output", "priority", "tags",
    "enabled", "source", "exceptions", "threshold", "suppress_by", "override",
))
APPENDABLE = frozenset(("condition", "output", "desc", "description", "tags", "exceptions"))
REPLACEABLE = RULE_KEYS - {"name", "rule", "override"}
EXCEPTION_KEYS = frozenset(("name", "fields", "comps", "values"))
THRESHOLD_KEYS = frozenset(("count", "within", "by", "distinct", "sum", "max_keys"))


def default_rules_dir() -> Path:
    """The shipped rules: inside the wheel (`_data/rules`), else the repository's `rules/`."""
    package = Path(cauditd.__file__).parent
    packaged = package / "_data" / "rules"
    return packaged if packaged.is_dir() else package.parents[1] / "rules"


@dataclass(slots=True)
class Text:
    """A condition or output text with where it starts in its file."""

    text: str
    where: Where
    line: int


@dataclass(slots=True)
class RuleDef:
    """A rule as the files define it, before compiling; later files may change it."""

    name: str
    where: Where
    condition: Text | None = None
    output: Text | None = None
    values: dict[str, Any] = field(default_factory=dict)


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


@dataclass(slots=True)
class State:
    """Lists, macros and rules as the files so far define them."""

    lists: dict[str, tuple[list[str], Where]] = field(default_factory=dict)
    macros: dict[str, Text] = field(default_factory=dict)
    rules: dict[str, RuleDef] = field(default_factory=dict)
    errors: list[RuleError] = field(default_factory=list)


def rule_files(paths: Sequence[Path]) -> tuple[list[Path], list[RuleError]]:
    """Files in load order: a directory gives its *.toml sorted by name. A missing path whose
    name does not end in .toml is an empty directory (like an absent /etc/cauditd/rules.d)."""
    files: list[Path] = []
    errors: list[RuleError] = []
    for path in map(Path, paths):
        if path.is_dir():
            files.extend(sorted(p for p in path.glob("*.toml") if p.is_file()))
        elif path.is_file():
            files.append(path)
        elif path.suffix == ".toml":
            errors.append(TomlSyntaxError("no such file", Where(str(path))))
    return files, errors


def read_files(paths: Sequence[Path]) -> State:
    state = State()
    files, state.errors = rule_files(paths)
    for path in files:
        load_file(path, state)
    return state


def load_file(path: Path, state: State) -> None:
    try:
        raw = path.read_text()
        doc = tomllib.loads(raw)
    except OSError as exc:
        state.errors.append(TomlSyntaxError(exc.strerror or str(exc), Where(str(path))))
        return
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        match = re.search(r"at line (\d+)", str(exc))
        line = int(match.group(1)) if match else 0
        state.errors.append(TomlSyntaxError(f"not valid TOML: {exc}", Where(str(path), line)))
        return
    index = LineIndex(raw)
    unknown = sorted(set(doc) - {"lists", "macros", "rules"})
    if unknown:
        state.errors.append(SchemaError(f"unknown table {unknown[0]!r} (known: lists, macros, "
                                        "rules)", Where(str(path), 1)))
    for kind, loader in (("lists", load_list), ("macros", load_macro)):
        table = doc.get(kind, {})
        if not isinstance(table, dict):
            state.errors.append(SchemaError(f"[{kind}] must be a table", Where(str(path))))
            continue
        for name, value in table.items():
            where = Where(str(path), index.tables[kind].get(name, 0), f"{kind[:-1]} {name!r}")
            _guard(state, loader, name, value, where, index)
    rules = doc.get("rules", [])
    if not isinstance(rules, list):
        state.errors.append(SchemaError("rules must be [[rules]] tables", Where(str(path))))
        return
    for i, entry in enumerate(rules):
        keys = index.rules[i] if i < len(index.rules) else {"": 0}
        _guard(state, load_rule, i, entry, Where(str(path), keys[""]), index, keys)


def _guard(state: State, loader: Any, *args: Any) -> None:
    try:
        loader(state, *args)
    except RuleError as exc:
        state.errors.append(exc)


def _override_mode(value: Any, where: Where) -> str:
    if value not in ("append", "replace"):
        raise OverrideError(f"override must be 'append' or 'replace', not {value!r}", where)
    return str(value)


def load_list(state: State, name: str, value: Any, where: Where, index: LineIndex) -> None:
    mode = "define"
    if isinstance(value, dict):
        extra = sorted(set(value) - {"items", "override"})
        if extra:
            raise SchemaError(f"unknown key {extra[0]!r} (known: items, override)", where)
        mode = _override_mode(value["override"], where) if "override" in value else "define"
        value = value.get("items", [])
    if not isinstance(value, list) or not all(isinstance(v, str | int) for v in value):
        raise SchemaError("a list must be an array of strings or numbers", where)
    items = [str(v) for v in value]
    if mode == "append":
        if name not in state.lists:
            raise OverrideError("override = 'append' of a list that is not defined", where)
        items = state.lists[name][0] + items
    state.lists[name] = (items, where)


def load_macro(state: State, name: str, value: Any, where: Where, index: LineIndex) -> None:
    mode = "define"
    if isinstance(value, dict):
        extra = sorted(set(value) - {"condition", "override"})
        if extra:
            raise SchemaError(f"unknown key {extra[0]!r} (known: condition, override)", where)
        mode = _override_mode(value["override"], where) if "override" in value else "define"
        value = value.get("condition")
    if not isinstance(value, str):
        raise SchemaError("a macro must be a condition string", where)
    text = Text(value, where, index.content_line(where.line))
    if mode == "append":
        old = state.macros.get(name)
        if old is None:
            raise OverrideError("override = 'append' of a macro that is not defined", where)
        text = Text(f"{old.text} {value}", old.where, old.line)
    state.macros[name] = text


def load_rule(state: State, i: int, entry: Any, where: Where, index: LineIndex,
              keys: dict[str, int]) -> None:
    if not isinstance(entry, dict):
        raise SchemaError("a rule must be a table", where)
    name = entry.get("name", entry.get("rule"))
    if not isinstance(name, str) or not name:
        raise SchemaError("rule needs a 'name'", where)
    where = Where(where.file, where.line, f"rule {name!r}")
    unknown = sorted(set(entry) - RULE_KEYS)
    if unknown:
        raise SchemaError(f"unknown key {unknown[0]!r} (known: {', '.join(sorted(RULE_KEYS))})",
                          where)
    values = {k: v for k, v in entry.items() if k not in ("name", "rule", "override")}
    texts = {k: Text(v, where, index.content_line(keys.get(k, where.line)))
             for k in ("condition", "output") if isinstance(v := values.get(k), str)}
    existing = state.rules.get(name)
    if "override" in entry:
        apply_override(state, existing, entry["override"], values, texts, where)
    elif existing is not None and set(values) <= {"enabled"}:
        existing.values.update(values)
    else:
        missing = [k for k in ("condition", "output", "priority") if k not in values]
        if missing:
            raise SchemaError(f"rule needs {missing[0]!r}", where)
        state.rules[name] = RuleDef(name, where, texts.get("condition"), texts.get("output"),
                                    values)


def apply_override(state: State, rule: RuleDef | None, override: Any, values: dict[str, Any],
                   texts: dict[str, Text], where: Where) -> None:
    if not isinstance(override, dict):
        raise OverrideError("override must be a table, e.g. { condition = \"append\" }", where)
    if rule is None:
        raise OverrideError("override of a rule that is not defined", where)
    for key in values:
        if key not in override and key != "enabled":
            raise OverrideError(f"{key!r} given without an override mode for it", where)
    for key, mode in override.items():
        mode = _override_mode(mode, where)
        allowed = APPENDABLE if mode == "append" else REPLACEABLE
        if key not in allowed:
            raise OverrideError(f"{key!r} cannot be overridden with {mode!r}", where)
        if key not in values:
            raise OverrideError(f"override of {key!r} but no {key!r} given", where)
        if mode == "replace":
            _replace(rule, key, values[key], texts)
        else:
            _append(rule, key, values[key], where)
    if "enabled" in values and "enabled" not in override:
        rule.values["enabled"] = values["enabled"]


def _replace(rule: RuleDef, key: str, value: Any, texts: dict[str, Text]) -> None:
    rule.values[key] = value
    if key == "condition":
        rule.condition = texts.get("condition")
    elif key == "output":
        rule.output = texts.get("output")


def _append(rule: RuleDef, key: str, value: Any, where: Where) -> None:
    old = rule.values.get(key)
    if key == "tags":
        rule.values[key] = [*(old or []), *[t for t in value if t not in (old or [])]]
    elif key == "exceptions":
        rule.values[key] = _merge_exceptions(list(old or []), value, where)
    elif key in ("condition", "output") and isinstance(value, str):
        text = rule.condition if key == "condition" else rule.output
        if text is not None:
            merged = Text(f"{text.text} {value}", text.where, text.line)
            rule.values[key] = merged.text
            if key == "condition":
                rule.condition = merged
            else:
                rule.output = merged
    else:
        rule.values[key] = f"{old or ''} {value}".strip()


def _merge_exceptions(old: list[Any], new: Any, where: Where) -> list[Any]:
    if not isinstance(new, list):
        raise SchemaError("exceptions must be an array of tables", where)
    by_name = {e.get("name"): e for e in old if isinstance(e, dict)}
    for exc in new:
        if isinstance(exc, dict) and exc.get("name") in by_name:
            target = by_name[exc["name"]]
            target["values"] = [*target.get("values", []), *exc.get("values", [])]
        else:
            old.append(exc)
    return old


# --- compiling ---------------------------------------------------------------------------


def compile_state(state: State, min_priority: Priority) -> tuple[list[Rule], list[RuleError]]:
    errors = list(state.errors)
    lists = _expand_lists(state)
    macros: dict[str, Condition] = {}
    unparsed: set[str] = set()
    for name, text in state.macros.items():
        try:
            macros[name] = parse_condition(text.text, text.where, text.line)
        except RuleError as exc:
            errors.append(exc)
            unparsed.add(name)
    compiler = Compiler(macros, lists)
    compiler.broken |= unparsed
    for name in macros:
        try:
            compiler.macro_by_name(name)
        except BrokenMacro:
            pass
        except RuleError as exc:
            errors.append(exc)
    rules: list[Rule] = []
    for definition in state.rules.values():
        try:
            rule = compile_rule(definition, compiler)
        except BrokenMacro:
            continue
        except RuleSetError as exc:
            errors.extend(exc.errors)
            continue
        if rule.priority <= min_priority:
            rules.append(rule)
    errors.extend(compiler.macro_errors)
    return rules, _dedupe(errors)


def _dedupe(errors: list[RuleError]) -> list[RuleError]:
    seen: set[str] = set()
    out: list[RuleError] = []
    for error in errors:
        if str(error) not in seen:
            seen.add(str(error))
            out.append(error)
    return out


def _expand_lists(state: State) -> dict[str, list[str]]:
    def expand(name: str, seen: frozenset[str]) -> list[str]:
        items: list[str] = []
        for item in state.lists[name][0]:
            if item in state.lists and item not in seen:
                items.extend(expand(item, seen | {item}))
            else:
                items.append(item)
        return items

    return {name: expand(name, frozenset((name,))) for name in state.lists}


def compile_rule(definition: RuleDef, compiler: Compiler) -> Rule:
    """Compile one rule; raises RuleSetError holding every problem the rule has."""
    values, where = definition.values, definition.where
    assert definition.condition is not None and definition.output is not None
    errors: list[RuleError] = []

    def attempt(func: Any, *args: Any) -> Any:
        try:
            return func(*args)
        except RuleError as exc:
            errors.append(exc)
            return None

    priority = attempt(_priority, values.get("priority"), where)
    source = attempt(_source, values.get("source", "syscall"), where)
    predicate, event_types, kernel = attempt(_condition, definition.condition, compiler,
                                             source or "syscall", where) or (None, None, None)
    exceptions = attempt(_exceptions, values.get("exceptions", []), compiler, where)
    output = attempt(parse_output, definition.output.text, where, definition.output.line)
    suppress = values.get("suppress_by")
    suppress_fields = attempt(_field_list, suppress, "suppress_by", where) \
        if suppress is not None else None
    tags = attempt(_string_list, values.get("tags", []), "tags", where)
    enabled = attempt(_bool, values.get("enabled", True), "enabled", where)
    threshold = attempt(_threshold, values.get("threshold"), where)
    if errors:
        raise RuleSetError(errors)
    assert predicate is not None and output is not None and kernel is not None
    if exceptions is not None:
        predicate = _unless(predicate, exceptions)
    if suppress_fields is None:
        suppress_fields = tuple(f for f in _output_fields(output.field_names)
                                if not _volatile(f[0]))
    return Rule(
        name=definition.name,
        description=str(values.get("desc", values.get("description", ""))),
        condition=definition.condition.text,
        priority=priority,
        source=source,
        tags=tuple(tags),
        enabled=bool(enabled),
        predicate=predicate,
        output=output,
        event_types=event_types,
        opens=kernel[0],
        connects=kernel[1],
        dups=kernel[2],
        suppress_by=suppress_fields,
        threshold=threshold,
        where=where,
    )


def _source(value: Any, where: Where) -> str:
    if value not in EVENT_TYPES:
        raise SchemaError(f"source must be 'syscall' or 'network', not {value!r}", where)
    return str(value)


def _condition(
    text: Text, compiler: Compiler, source: str, where: Where
) -> tuple[Pred, frozenset[str] | None, tuple[Clauses, Clauses, Clauses]]:
    """The predicate, the evt.type values it can match, and the opens, connects and dups it
    can match (rules.prefilter, for the kernel's filters)."""
    condition = parse_condition(text.text, where, text.line)
    predicate = compiler.compile(condition)
    event_types = compiler.event_types(condition)
    _check_source_types(event_types, source, where)
    kernel = tuple(ClauseDeriver(types, compiler.macros, compiler.lists).clauses(condition.ast)
                   for types in (OPEN_TYPES, CONNECT_TYPES, DUP_TYPES))
    return predicate, event_types, (kernel[0], kernel[1], kernel[2])


def _exceptions(value: Any, compiler: Compiler, where: Where) -> Pred | None:
    text = _exception_condition(value, where)
    if text is None:
        return None
    exc_where = Where(where.file, where.line, f"{where.item} exceptions")
    return compiler.compile(parse_condition(text, exc_where))


def _unless(base: Pred, unless: Pred) -> Pred:
    return lambda ev: base(ev) and not unless(ev)


def _priority(value: Any, where: Where) -> Priority:
    try:
        return Priority.parse(str(value))
    except ValueError as exc:
        raise PriorityError(str(exc), where) from None


def _check_source_types(types: frozenset[str] | None, source: str, where: Where) -> None:
    for evt_type in sorted(types or ()):
        if evt_type not in EVENT_TYPES[source]:
            raise TypeMismatchError(f"evt.type {evt_type!r} never comes from source "
                                    f"{source!r}", where)


def _bool(value: Any, key: str, where: Where) -> bool:
    if not isinstance(value, bool):
        raise SchemaError(f"{key} must be true or false", where)
    return value


def _string_list(value: Any, key: str, where: Where) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SchemaError(f"{key} must be an array of strings", where)
    return value


def _field_list(value: Any, key: str, where: Where) -> tuple[tuple[str, Any], ...]:
    names = _string_list(value, key, where)
    return tuple(_resolve(name, key, where) for name in names)


def _resolve(name: str, key: str, where: Where) -> tuple[str, Any]:
    resolved = lookup(name)
    if resolved is None:
        raise UnknownFieldError(f"unknown field {name!r} in {key}", where)
    return name, resolved[0].extractor(resolved[1])


def _output_fields(names: tuple[str, ...]) -> tuple[tuple[str, Any], ...]:
    return tuple(_resolve(n, "output", Where()) for n in dict.fromkeys(names))


def _volatile(name: str) -> bool:
    resolved = lookup(name)
    return resolved is None or resolved[0].volatile


def _threshold(value: Any, where: Where) -> Threshold | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise SchemaError("threshold must be a table { count, within, by, distinct }", where)
    unknown = sorted(set(value) - THRESHOLD_KEYS)
    if unknown:
        raise SchemaError(f"unknown threshold key {unknown[0]!r}", where)
    count, max_keys = value.get("count"), value.get("max_keys", 10000)
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise SchemaError("threshold.count must be a positive integer", where)
    if not isinstance(max_keys, int) or max_keys < 1:
        raise SchemaError("threshold.max_keys must be a positive integer", where)
    try:
        within = parse_duration(value.get("within", "60s"))
    except ValueError:
        raise SchemaError(f"threshold.within: bad duration {value.get('within')!r} "
                          '(e.g. "10s", "500ms", "5m")', where) from None
    distinct, total = value.get("distinct"), value.get("sum")
    for key, name in (("distinct", distinct), ("sum", total)):
        if name is not None and not isinstance(name, str):
            raise SchemaError(f"threshold.{key} must be a field name", where)
    if distinct and total:
        raise SchemaError("threshold takes distinct or sum, not both", where)
    spec = ThresholdSpec(
        count=count,
        within_ns=within,
        by=_field_list(value.get("by", ["container.id"]), "threshold.by", where),
        distinct=_resolve(distinct, "threshold.distinct", where) if distinct else None,
        total=_resolve(total, "threshold.sum", where) if total else None,
        max_keys=max_keys,
    )
    return Threshold(spec)


def _exception_condition(exceptions: Any, where: Where) -> str | None:
    """Falco's exceptions as one condition text: (f1 c1 v1 and f2 c2 v2) or ..."""
    if not isinstance(exceptions, list):
        raise SchemaError("exceptions must be an array of tables", where)
    clauses = [c for exc in exceptions for c in _exception_clauses(exc, where)]
    return " or ".join(clauses) if clauses else None


def _exception_clauses(exc: Any, where: Where) -> list[str]:
    if not isinstance(exc, dict) or not isinstance(exc.get("name"), str):
        raise SchemaError("each exception needs a 'name'", where)
    unknown = sorted(set(exc) - EXCEPTION_KEYS)
    if unknown:
        raise SchemaError(f"exception {exc['name']!r}: unknown key {unknown[0]!r}", where)
    fields, values = exc.get("fields"), exc.get("values", [])
    if not isinstance(values, list):
        raise SchemaError(f"exception {exc['name']!r}: values must be an array", where)
    if isinstance(fields, str):
        comp = exc.get("comps", "in")
        return [f"{fields} {comp} ({', '.join(_quote(v) for v in values)})"] if values else []
    if not isinstance(fields, list) or not fields:
        raise SchemaError(f"exception {exc['name']!r}: fields must be a field or an array", where)
    comps = exc.get("comps", ["="] * len(fields))
    if not isinstance(comps, list) or len(comps) != len(fields):
        raise SchemaError(f"exception {exc['name']!r}: comps must match fields", where)
    clauses = []
    for row in values:
        if not isinstance(row, list) or len(row) != len(fields):
            raise SchemaError(f"exception {exc['name']!r}: each value must have "
                              f"{len(fields)} items", where)
        parts = [f"{f} {c} {_operand(v)}" for f, c, v in zip(fields, comps, row, strict=True)]
        clauses.append("(" + " and ".join(parts) + ")")
    return clauses


def _operand(value: Any) -> str:
    if isinstance(value, list):
        return "(" + ", ".join(_quote(v) for v in value) + ")"
    return _quote(value)


def _quote(value: Any) -> str:
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


# --- public entry points -------------------------------------------------------------------


def load_ruleset(paths: Sequence[Path], *, min_priority: Priority = Priority.DEBUG) -> RuleSet:
    """Load and compile rule files (later ones change earlier ones); raises RuleSetError."""
    rules, errors = compile_state(read_files(paths), min_priority)
    if errors:
        raise RuleSetError(errors)
    return RuleSet(rules)


def check(paths: Sequence[Path]) -> list[RuleError]:
    """Every problem in every file (empty when the rules load)."""
    return compile_state(read_files(paths), Priority.DEBUG)[1]
