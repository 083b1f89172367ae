"""The builder: a RuleBook (the model, from any reader) compiled into Rules, once.

Rules of TOML files are strict: every problem is an error and a set with errors does not load.
Rules and macros of Falco files are lenient: one that cannot load is skipped with one line
saying where and why (so are the rules that use a broken macro), and the rest loads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cauditd.findings import Priority
from cauditd.rules.compiler import BrokenMacro, Compiler, Pred
from cauditd.rules.errors import (
    Notice,
    RuleError,
    SchemaError,
    TypeMismatchError,
    UnknownFieldError,
    Where,
)
from cauditd.rules.fields import EVENT_TYPES, OPEN_TYPES, lookup
from cauditd.rules.model import ExceptionDef, RuleBook, RuleSpec, Text, ThresholdDef
from cauditd.rules.output import OutputTemplate, parse_output
from cauditd.rules.parser import Condition, parse_condition
from cauditd.rules.prefilter import (
    ACCEPT_TYPES,
    CONNECT_TYPES,
    DUP_TYPES,
    EXEC_TYPES,
    SOCKET_TYPES,
    ClauseDeriver,
    Clauses,
    directions,
    env_names,
    excludes_served_inbound,
)
from cauditd.rules.requirements import check_requirements
from cauditd.rules.ruleset import Rule
from cauditd.rules.threshold import Threshold, ThresholdSpec

FieldRef = tuple[str, Callable[[Any], Any]]


@dataclass(slots=True)
class Build:
    """What the builder made of a RuleBook: the rules, the errors, and what it skipped."""

    rules: list[Rule] = field(default_factory=list)
    errors: list[RuleError] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)
    broken_macros: set[str] = field(default_factory=set)


def build(book: RuleBook, min_priority: Priority = Priority.DEBUG) -> Build:
    """Compile every rule of `book` as severe as `min_priority` or more."""
    result = Build(errors=list(book.errors), notices=check_requirements(book.requirements))
    compiler = _compile_macros(book, result)
    for spec in book.rules.values():
        rule = _build_rule(spec, compiler, book, result)
        if rule is not None and rule.priority <= min_priority:
            result.rules.append(rule)
    for error in compiler.macro_errors:
        _macro_problem(book, error, result)
    result.errors = _dedupe(result.errors)
    result.broken_macros = set(compiler.broken)
    return result


def _compile_macros(book: RuleBook, result: Build) -> Compiler:
    macros: dict[str, Condition] = {}
    unparsed: set[str] = set()
    for name, entry in book.macros.items():
        text = entry.condition
        try:
            macros[name] = parse_condition(text.text, text.where, text.line)
        except RuleError as exc:
            _macro_problem(book, exc, result)
            unparsed.add(name)
    compiler = Compiler(macros, expand_lists(book))
    compiler.broken |= unparsed
    for name in macros:
        try:
            compiler.macro_by_name(name)
        except BrokenMacro:
            pass
        except RuleError as exc:  # a cycle: reported once, here
            _macro_problem(book, exc, result)
        except RecursionError:
            compiler.stack.clear()
            compiler.broken.add(name)
            _macro_problem(book, _too_deep(book.macros[name].where), result)
    return compiler


def _too_deep(where: Where) -> RuleError:
    return SchemaError("macros used inside macros too deeply to compile", where)


def _macro_problem(book: RuleBook, error: RuleError, result: Build) -> None:
    name = error.where.item.removeprefix("macro ").strip("'")
    entry = book.macros.get(name)
    if entry is not None and entry.lenient:
        result.notices.append(_skip_notice(error))
    else:
        result.errors.append(error)


def _skip_notice(error: RuleError) -> Notice:
    where = Where(error.where.file, error.line, error.where.item)
    return Notice(where, f"skipped: {error.message}")


def expand_lists(book: RuleBook) -> dict[str, list[str]]:
    """Every list with the lists it names replaced by their items (cycles cut)."""

    def expand(name: str, seen: frozenset[str]) -> list[str]:
        items: list[str] = []
        for item in book.lists[name].items:
            if item in book.lists and item not in seen:
                items.extend(expand(item, seen | {item}))
            else:
                items.append(item)
        return items

    return {name: expand(name, frozenset((name,))) for name in book.lists}


def _build_rule(spec: RuleSpec, compiler: Compiler, book: RuleBook,
                result: Build) -> Rule | None:
    source = spec.values.get("source", "syscall")
    if spec.lenient and source not in EVENT_TYPES:
        known = ", ".join(EVENT_TYPES)
        result.notices.append(Notice(spec.where, f"skipped: source {source!r} is not one "
                                                 f"cauditd has ({known})"))
        return None
    try:
        return compile_rule(spec, compiler)
    except BrokenMacro as broken:
        name = str(broken)
        _broken_macro(spec, name, compiler.why_broken.get(name, ""), book, result)
    except RuleError as exc:
        if spec.lenient:
            result.notices.append(_skip_notice(exc))
        else:
            result.errors.append(exc)
    except RecursionError:
        compiler.stack.clear()
        if spec.lenient:
            result.notices.append(_skip_notice(_too_deep(spec.where)))
        else:
            result.errors.append(_too_deep(spec.where))
    except _RuleErrors as exc:
        if spec.lenient:
            result.notices.append(_skip_notice(exc.errors[0]))
        else:
            result.errors.extend(exc.errors)
    return None


def _broken_macro(spec: RuleSpec, name: str, why: str, book: RuleBook, result: Build) -> None:
    """Name the rule a broken macro keeps from loading (a strict macro's own error is enough
    for a strict rule: that set does not load anyway)."""
    entry = book.macros.get(name)
    if spec.lenient or (entry is not None and entry.lenient):
        reason = f": {why}" if why else ""
        notice = Notice(spec.where, f"skipped: uses macro {name!r}, which does not load"
                                    f"{reason}")
        if spec.lenient:
            result.notices.append(notice)
        else:
            result.errors.append(SchemaError(notice.message.removeprefix("skipped: "),
                                             spec.where))


class _RuleErrors(Exception):
    """Every problem one rule has."""

    def __init__(self, errors: list[RuleError]) -> None:
        super().__init__(errors)
        self.errors = errors


def compile_rule(spec: RuleSpec, compiler: Compiler) -> Rule:
    """Compile one rule; raises _RuleErrors holding every problem it has, or BrokenMacro."""
    values, where = spec.values, spec.where
    errors: list[RuleError] = list(spec.errors)

    def attempt(func: Callable[..., Any], *args: Any) -> Any:
        try:
            return func(*args)
        except RuleError as exc:
            errors.append(exc)
            return None

    source = attempt(_source, values.get("source", "syscall"), where)
    predicate, event_types, kernel, served, flow_directions, env = attempt(
        _condition, spec.condition, compiler, source or "syscall", where
    ) or (None, None, None, True, None, None)
    exceptions = attempt(_exceptions, values.get("exceptions", ()), compiler, where)
    output = attempt(parse_output, spec.output.text, where, spec.output.line)
    suppress = values.get("suppress_by")
    suppress_fields = attempt(_field_list, suppress, "suppress_by", where) \
        if suppress is not None else None
    threshold = attempt(_threshold, values.get("threshold"), where)
    if errors:
        raise _RuleErrors(errors)
    assert predicate is not None and output is not None and kernel is not None
    if exceptions is not None:
        predicate = _unless(predicate, exceptions)
    return Rule(
        name=spec.name,
        description=str(values.get("desc", "")),
        condition=spec.condition.text,
        priority=values["priority"],
        source=source,
        tags=tuple(values.get("tags", ())),
        enabled=bool(values.get("enabled", True)),
        predicate=predicate,
        output=output,
        event_types=event_types,
        opens=kernel[0],
        connects=kernel[1],
        dups=kernel[2],
        sockets=kernel[3],
        accepts=kernel[4],
        execs=kernel[5],
        served_inbound=served,
        directions=flow_directions,
        env_names=env,
        suppress_by=_suppress_fields(output) if suppress_fields is None else suppress_fields,
        threshold=threshold,
        where=where,
    )


def _source(value: str, where: Where) -> str:
    if value not in EVENT_TYPES:
        raise SchemaError(f"source must be 'syscall' or 'network', not {value!r}", where)
    return value


def _condition(
    text: Text, compiler: Compiler, source: str, where: Where
) -> tuple[Pred, frozenset[str] | None, tuple[Clauses, ...], bool, frozenset[str] | None,
           frozenset[str] | None]:
    """The predicate, the evt.type values it can match, and the opens, connects, dups and
    sockets it can match (rules.prefilter, for the kernel's filters), the execs (for rules.index),
    whether it can match a new inbound flow to a port already served (probes/net.c), the
    net.direction values it can match (rules.index), and the environment variables it reads
    (for the kernel's walk of a large environment)."""
    condition = parse_condition(text.text, where, text.line)
    predicate = compiler.compile(condition)
    event_types = compiler.event_types(condition)
    _check_source_types(event_types, source, where)
    kernel = tuple(ClauseDeriver(types, compiler.macros, compiler.lists).clauses(condition.ast)
                   for types in (OPEN_TYPES, CONNECT_TYPES, DUP_TYPES, SOCKET_TYPES, ACCEPT_TYPES,
                                 EXEC_TYPES))
    served = not excludes_served_inbound(condition.ast, compiler.macros, compiler.lists)
    flow_directions = directions(condition.ast, compiler.macros, compiler.lists)
    env = env_names(condition.ast, compiler.macros, compiler.lists)
    return predicate, event_types, kernel, served, flow_directions, env


def _exceptions(exceptions: tuple[ExceptionDef, ...], compiler: Compiler,
                where: Where) -> Pred | None:
    for exc in exceptions:
        exc.check_rows(where)
    texts = [t for exc in exceptions if (t := exc.condition()) is not None]
    if not texts:
        return None
    exc_where = Where(where.file, where.line, f"{where.item} exceptions")
    return compiler.compile(parse_condition(" or ".join(texts), exc_where))


def _unless(base: Pred, unless: Pred) -> Pred:
    return lambda ev: base(ev) and not unless(ev)


def _check_source_types(types: frozenset[str] | None, source: str, where: Where) -> None:
    for evt_type in sorted(types or ()):
        if evt_type not in EVENT_TYPES[source]:
            raise TypeMismatchError(f"evt.type {evt_type!r} never comes from source "
                                    f"{source!r}", where)


def _field_list(names: tuple[str, ...], key: str, where: Where) -> tuple[FieldRef, ...]:
    return tuple(_resolve(name, key, where) for name in names)


def _resolve(name: str, key: str, where: Where) -> FieldRef:
    resolved = lookup(name)
    if resolved is None:
        raise UnknownFieldError(f"unknown field {name!r} in {key}", where)
    return name, resolved[0].extractor(resolved[1])


def _suppress_fields(output: OutputTemplate) -> tuple[FieldRef, ...]:
    """The output's fields, less the volatile ones (pids, byte counts): repeats of a finding
    differ only in those."""
    names = [n for n in dict.fromkeys(output.field_names) if not _volatile(n)]
    return tuple(_resolve(n, "output", Where()) for n in names)


def _volatile(name: str) -> bool:
    resolved = lookup(name)
    return resolved is None or resolved[0].volatile


def _threshold(spec: ThresholdDef | None, where: Where) -> Threshold | None:
    if spec is None:
        return None
    return Threshold(ThresholdSpec(
        count=spec.count,
        within_ns=spec.within_ns,
        by=_field_list(spec.by, "threshold.by", where),
        distinct=_resolve(spec.distinct, "threshold.distinct", where) if spec.distinct else None,
        total=_resolve(spec.total, "threshold.sum", where) if spec.total else None,
        max_keys=spec.max_keys,
    ))


def _dedupe(errors: list[RuleError]) -> list[RuleError]:
    seen: set[str] = set()
    out: list[RuleError] = []
    for error in errors:
        if str(error) not in seen:
            seen.add(str(error))
            out.append(error)
    return out
