"""The rule model every reader produces: lists, macros and rules as files give them, validated.

A reader (rules.read_toml, rules.read_falco) turns one file into a RuleFile of entries; each
entry's `from_dict` checks the shape of what the file says (pySigma's habit) and raises a
SchemaError with file:line. A RuleBook applies the entries of every file in order (define,
append, replace, enable) and holds the result, which rules.builder compiles.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cauditd.findings import Priority
from cauditd.rules.errors import OverrideError, PriorityError, RuleError, SchemaError, Where
from cauditd.rules.threshold import parse_duration

DEFINE, APPEND, REPLACE = "define", "append", "replace"
RULE_KEYS = frozenset((
    "name", "desc", "condition", "output", "priority", "tags", "enabled", "source",
    "exceptions", "threshold", "suppress_by", "override",
))
APPENDABLE = frozenset(("condition", "output", "desc", "tags", "exceptions"))
REPLACEABLE = RULE_KEYS - {"name", "override"}
EXCEPTION_KEYS = frozenset(("name", "fields", "comps", "values"))
THRESHOLD_KEYS = frozenset(("count", "within", "by", "distinct", "sum", "max_keys"))
LIST_OPERATORS = frozenset(("in", "intersects", "pmatch"))


@dataclass(frozen=True, slots=True)
class Text:
    """A condition or output text with where it starts in its file."""

    text: str
    where: Where
    line: int

    def extended(self, more: str) -> Text:
        """This text with `more` appended (Falco's append), keeping where it started."""
        return Text(f"{self.text} {more}", self.where, self.line)


@dataclass(slots=True)
class ListEntry:
    """A list as one file gives it: its items, and whether it defines or appends."""

    name: str
    items: list[str]
    where: Where
    mode: str = DEFINE

    @classmethod
    def from_dict(cls, name: str, data: Mapping[str, Any], where: Where) -> ListEntry:
        """`data`: {items, override?}; items are strings or numbers."""
        items = data.get("items", [])
        if not isinstance(items, list) or not all(_scalar(v) for v in items):
            raise SchemaError("a list must be an array of strings or numbers", where)
        return cls(name, [_text(v) for v in items], where, override_mode(data, where))


@dataclass(slots=True)
class MacroEntry:
    """A macro as one file gives it."""

    name: str
    condition: Text
    where: Where
    mode: str = DEFINE
    lenient: bool = False

    @classmethod
    def from_dict(cls, name: str, data: Mapping[str, Any], where: Where, line: int,
                  *, lenient: bool = False) -> MacroEntry:
        """`data`: {condition, override?}; `line` is where the condition's text starts."""
        condition = data.get("condition")
        if not isinstance(condition, str):
            raise SchemaError("a macro must be a condition string", where)
        mode = override_mode(data, where)
        if mode == REPLACE:
            mode = DEFINE
        return cls(name, Text(condition, where, line), where, mode, lenient)


@dataclass(frozen=True, slots=True)
class ExceptionDef:
    """One of Falco's rule exceptions: fields, comparison operators, rows of values.

    An appended exception may give only its name and more values (fields is None then)."""

    name: str
    fields: tuple[str, ...] | str | None
    comps: tuple[str, ...] | str | None
    values: tuple[Any, ...]

    @classmethod
    def from_dict(cls, data: Any, where: Where) -> ExceptionDef:
        if not isinstance(data, Mapping) or not isinstance(data.get("name"), str):
            raise SchemaError("each exception needs a 'name'", where)
        name = data["name"]
        unknown = sorted(set(data) - EXCEPTION_KEYS)
        if unknown:
            raise SchemaError(f"exception {name!r}: unknown key {unknown[0]!r}", where)
        fields, values = data.get("fields"), data.get("values", [])
        if not isinstance(values, list):
            raise SchemaError(f"exception {name!r}: values must be an array", where)
        if fields is None:
            return cls(name, None, None, tuple(values))
        if isinstance(fields, str):
            comp = data.get("comps", "in")
            if not isinstance(comp, str):
                raise SchemaError(f"exception {name!r}: comps must be an operator", where)
            return cls(name, fields, comp, tuple(values))
        if not isinstance(fields, list) or not fields or not all(isinstance(f, str)
                                                                 for f in fields):
            raise SchemaError(f"exception {name!r}: fields must be a field or an array", where)
        comps = data.get("comps", ["="] * len(fields))
        if isinstance(comps, str):
            comps = [comps] * len(fields)
        if not isinstance(comps, list) or len(comps) != len(fields):
            raise SchemaError(f"exception {name!r}: comps must match fields", where)
        exc = cls(name, tuple(fields), tuple(str(c) for c in comps), tuple(values))
        exc.check_rows(where)
        return exc

    def check_rows(self, where: Where) -> None:
        """Each row of values has one value per field."""
        if self.fields is None:
            raise SchemaError(f"exception {self.name!r}: needs fields", where)
        if isinstance(self.fields, str):
            return
        for row in self.values:
            if not isinstance(row, list) or len(row) != len(self.fields):
                raise SchemaError(f"exception {self.name!r}: each value must have "
                                  f"{len(self.fields)} items", where)

    def with_values(self, more: tuple[Any, ...]) -> ExceptionDef:
        return ExceptionDef(self.name, self.fields, self.comps, self.values + more)

    def condition(self) -> str | None:
        """The exception as a condition text: (f1 c1 v1 and f2 c2 v2) or ...; None if empty."""
        if self.fields is None:
            return None
        if isinstance(self.fields, str):
            if not self.values:
                return None
            items = ", ".join(_quote(v) for v in self.values)
            return f"{self.fields} {self.comps} ({items})"
        comps = self.comps if isinstance(self.comps, tuple) else ()
        rows = []
        for row in self.values:
            parts = [f"{f} {c} {_operand(c, v)}"
                     for f, c, v in zip(self.fields, comps, row, strict=True)]
            rows.append("(" + " and ".join(parts) + ")")
        return " or ".join(rows) if rows else None


@dataclass(frozen=True, slots=True)
class ThresholdDef:
    """A rule's threshold as written: fires on the count-th match within `within_ns`."""

    count: int
    within_ns: int
    by: tuple[str, ...]
    distinct: str | None
    total: str | None
    max_keys: int

    @classmethod
    def from_dict(cls, data: Any, where: Where) -> ThresholdDef:
        if not isinstance(data, Mapping):
            raise SchemaError("threshold must be a table { count, within, by, distinct }",
                              where)
        unknown = sorted(set(data) - THRESHOLD_KEYS)
        if unknown:
            raise SchemaError(f"unknown threshold key {unknown[0]!r}", where)
        count, max_keys = data.get("count"), data.get("max_keys", 10000)
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise SchemaError("threshold.count must be a positive integer", where)
        if not isinstance(max_keys, int) or isinstance(max_keys, bool) or max_keys < 1:
            raise SchemaError("threshold.max_keys must be a positive integer", where)
        try:
            within = parse_duration(data.get("within", "60s"))
        except ValueError:
            raise SchemaError(f"threshold.within: bad duration {data.get('within')!r} "
                              '(e.g. "10s", "500ms", "5m")', where) from None
        distinct, total = data.get("distinct"), data.get("sum")
        for key, name in (("distinct", distinct), ("sum", total)):
            if name is not None and not isinstance(name, str):
                raise SchemaError(f"threshold.{key} must be a field name", where)
        if distinct and total:
            raise SchemaError("threshold takes distinct or sum, not both", where)
        by = string_list(data.get("by", ["container.id"]), "threshold.by", where)
        return cls(count, within, tuple(by), distinct or None, total or None, max_keys)


@dataclass(slots=True)
class RuleEntry:
    """A rule as one file gives it: a definition, an override of some keys, or an enable.

    `values` holds the keys the entry sets, validated and typed (Text for condition and output,
    Priority, tuples for tags and suppress_by, ExceptionDef, ThresholdDef); `override` maps
    keys to "append" or "replace" (None for a definition). `lenient` rules come from Falco
    files: what cannot load of them is skipped and reported, the rest loads.
    """

    name: str
    where: Where
    values: dict[str, Any]
    override: dict[str, str] | None = None
    lenient: bool = False
    given: frozenset[str] = frozenset()
    errors: list[RuleError] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: Where, texts: Mapping[str, int],
                  *, lenient: bool = False) -> RuleEntry:
        """`data` with the model's key names; `texts` gives the line where the condition and
        output texts start."""
        name = data.get("name")
        if not isinstance(name, str) or not name:
            raise SchemaError("rule needs a 'name'", where)
        where = Where(where.file, where.line, f"rule {name!r}")
        unknown = sorted(set(data) - RULE_KEYS)
        if unknown:
            known = ", ".join(sorted(RULE_KEYS))
            raise SchemaError(f"unknown key {unknown[0]!r} (known: {known})", where)
        given = frozenset(data) - {"name", "override"}
        values: dict[str, Any] = {}
        errors: list[RuleError] = []
        for key in sorted(given, key=_KEY_ORDER.index):
            try:
                values[key] = _VALIDATORS[key](data[key], key, where,
                                               texts.get(key, where.line))
            except RuleError as exc:
                errors.append(exc)
        override = None
        if "override" in data:
            override = _override_table(data["override"], given, where)
        return cls(name, where, values, override, lenient, given, errors)

    @property
    def only_enables(self) -> bool:
        return self.override is None and self.given <= {"enabled"}


def _scalar(value: Any) -> bool:
    return isinstance(value, str | int | float) and not isinstance(value, bool)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def override_mode(data: Mapping[str, Any], where: Where) -> str:
    """A list's or macro's override key: absent (define), "append" or "replace"."""
    if "override" not in data:
        return DEFINE
    value = data["override"]
    if value not in (APPEND, REPLACE):
        raise OverrideError(f"override must be 'append' or 'replace', not {value!r}", where)
    return str(value)


def _override_table(value: Any, values: frozenset[str], where: Where) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise OverrideError("override must be a table, e.g. { condition = \"append\" }", where)
    for key in values:
        if key not in value and key != "enabled":
            raise OverrideError(f"{key!r} given without an override mode for it", where)
    table: dict[str, str] = {}
    for key, mode in value.items():
        if mode not in (APPEND, REPLACE):
            raise OverrideError(f"override must be 'append' or 'replace', not {mode!r}", where)
        if key not in (APPENDABLE if mode == APPEND else REPLACEABLE):
            raise OverrideError(f"{key!r} cannot be overridden with {mode!r}", where)
        if key not in values:
            raise OverrideError(f"override of {key!r} but no {key!r} given", where)
        table[str(key)] = str(mode)
    return table


def string_list(value: Any, key: str, where: Where) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SchemaError(f"{key} must be an array of strings", where)
    return value


def _as_text(value: Any, key: str, where: Where, line: int) -> Text:
    if not isinstance(value, str):
        raise SchemaError(f"{key} must be a string", where)
    return Text(value, where, line)


def _as_desc(value: Any, key: str, where: Where, line: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise SchemaError(f"{key} must be a string", where)
    return value


def _as_priority(value: Any, key: str, where: Where, line: int) -> Priority:
    try:
        return Priority.parse(str(value))
    except ValueError as exc:
        raise PriorityError(str(exc), where) from None


def _as_bool(value: Any, key: str, where: Where, line: int) -> bool:
    if not isinstance(value, bool):
        raise SchemaError(f"{key} must be true or false", where)
    return value


def _as_source(value: Any, key: str, where: Where, line: int) -> str:
    if not isinstance(value, str) or not value:
        raise SchemaError(f"source must be a name like 'syscall', not {value!r}", where)
    return value


def _as_tags(value: Any, key: str, where: Where, line: int) -> tuple[str, ...]:
    return tuple(string_list(value, key, where))


def _as_exceptions(value: Any, key: str, where: Where, line: int) -> tuple[ExceptionDef, ...]:
    if not isinstance(value, list):
        raise SchemaError("exceptions must be an array of tables", where)
    return tuple(ExceptionDef.from_dict(item, where) for item in value)


def _as_threshold(value: Any, key: str, where: Where, line: int) -> ThresholdDef:
    return ThresholdDef.from_dict(value, where)


# The order problems of one rule are reported in.
_KEY_ORDER = ("priority", "source", "condition", "exceptions", "output", "suppress_by", "tags",
              "enabled", "threshold", "desc")
_VALIDATORS = {
    "desc": _as_desc, "condition": _as_text, "output": _as_text, "priority": _as_priority,
    "tags": _as_tags, "enabled": _as_bool, "source": _as_source, "exceptions": _as_exceptions,
    "threshold": _as_threshold, "suppress_by": _as_tags,
}


def _operand(comp: str, value: Any) -> str:
    if isinstance(value, list):
        return "(" + ", ".join(_quote(v) for v in value) + ")"
    if comp in LIST_OPERATORS and isinstance(value, str) and _bare(value):
        return f"({value})"  # a list name (expanded when one exists) or a single item
    return _quote(value)


def _bare(value: str) -> bool:
    return bool(value) and not any(c.isspace() or c in "(),\"'" for c in value)


def _quote(value: Any) -> str:
    text = _text(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


# --- the merged result -------------------------------------------------------------------


@dataclass(slots=True)
class RuleSpec:
    """A rule after every file's entries for it are applied: what the builder compiles."""

    name: str
    where: Where
    values: dict[str, Any]
    lenient: bool = False
    errors: list[RuleError] = field(default_factory=list)

    @property
    def condition(self) -> Text:
        text: Text = self.values["condition"]
        return text

    @property
    def output(self) -> Text:
        text: Text = self.values["output"]
        return text


@dataclass(slots=True)
class Requirement:
    """A file's required_engine_version or required_plugin_versions entry."""

    kind: str  # "engine" or "plugin"
    name: str
    version: str
    where: Where


Entry = ListEntry | MacroEntry | RuleEntry


@dataclass(slots=True)
class RuleFile:
    """What a reader made of one file: its entries in order, requirements and errors."""

    path: str
    entries: list[Entry] = field(default_factory=list)
    requirements: list[Requirement] = field(default_factory=list)
    errors: list[RuleError] = field(default_factory=list)


@dataclass(slots=True)
class RuleBook:
    """Lists, macros and rules as the files so far define them (later files change earlier)."""

    lists: dict[str, ListEntry] = field(default_factory=dict)
    macros: dict[str, MacroEntry] = field(default_factory=dict)
    rules: dict[str, RuleSpec] = field(default_factory=dict)
    requirements: list[Requirement] = field(default_factory=list)
    errors: list[RuleError] = field(default_factory=list)

    def add_file(self, rule_file: RuleFile) -> None:
        self.errors.extend(rule_file.errors)
        self.requirements.extend(rule_file.requirements)
        for entry in rule_file.entries:
            try:
                self.add(entry)
            except RuleError as exc:
                self.errors.append(exc)

    def add(self, entry: Entry) -> None:
        if isinstance(entry, ListEntry):
            self._add_list(entry)
        elif isinstance(entry, MacroEntry):
            self._add_macro(entry)
        else:
            self._add_rule(entry)

    def _add_list(self, entry: ListEntry) -> None:
        if entry.mode == APPEND:
            old = self.lists.get(entry.name)
            if old is None:
                raise OverrideError("override = 'append' of a list that is not defined",
                                    entry.where)
            entry = ListEntry(entry.name, old.items + entry.items, old.where)
        self.lists[entry.name] = entry

    def _add_macro(self, entry: MacroEntry) -> None:
        if entry.mode == APPEND:
            old = self.macros.get(entry.name)
            if old is None:
                raise OverrideError("override = 'append' of a macro that is not defined",
                                    entry.where)
            entry = MacroEntry(entry.name, old.condition.extended(entry.condition.text),
                               old.where, DEFINE, old.lenient or entry.lenient)
        self.macros[entry.name] = entry

    def _add_rule(self, entry: RuleEntry) -> None:
        rule = self.rules.get(entry.name)
        if entry.override is not None:
            if rule is None:
                raise OverrideError("override of a rule that is not defined", entry.where)
            _apply_override(rule, entry)
            rule.errors.extend(entry.errors)
        elif rule is not None and entry.only_enables:
            rule.values.update(entry.values)
            rule.errors.extend(entry.errors)
        else:
            missing = [k for k in ("condition", "output", "priority") if k not in entry.given]
            if missing:
                raise SchemaError(f"rule needs {missing[0]!r}", entry.where)
            self.rules[entry.name] = RuleSpec(entry.name, entry.where, dict(entry.values),
                                              entry.lenient, list(entry.errors))


def _apply_override(rule: RuleSpec, entry: RuleEntry) -> None:
    assert entry.override is not None
    for key, value in entry.values.items():
        mode = entry.override.get(key)
        if mode == APPEND:
            rule.values[key] = _appended(key, rule.values.get(key), value)
        else:  # replace, or "enabled" given beside an override
            rule.values[key] = value


def _appended(key: str, old: Any, new: Any) -> Any:
    if old is None:
        return new
    if key in ("condition", "output"):
        return old.extended(new.text)
    if key == "desc":
        return f"{old} {new}".strip()
    if key == "tags":
        return (*old, *(t for t in new if t not in old))
    by_name = {e.name: i for i, e in enumerate(old)}
    merged = list(old)
    for exc in new:
        if exc.name in by_name:
            merged[by_name[exc.name]] = merged[by_name[exc.name]].with_values(exc.values)
        else:
            merged.append(exc)
    return tuple(merged)
