"""Compile a parsed condition into a plain Python closure, once; and find the evt.types it needs.

Semantics follow Falco: a check on a field the event lacks is false (so `not` of it is true);
on a multi-valued field (proc.aname, dns.answers, fd.net) a check is true when any value passes.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import functools
import ipaddress
import operator
import re
from collections.abc import Callable, Iterable
from typing import Any

from cauditd.events import Event
from cauditd.rules.args import Rendered
from cauditd.rules.errors import (
    ConditionSyntaxError,
    MacroCycleError,
    RuleError,
    TypeMismatchError,
    UnknownListError,
    UnknownMacroError,
)
from cauditd.rules.fields import EVENT_TYPES, FieldType, canonical_net, field_type, parse_ip
from cauditd.rules.parser import Check, Condition, FieldRef, MacroRef, Node, Not, Or, Value

Pred = Callable[[Event], bool]
Test = Callable[[Any], bool]
IpNet = ipaddress.IPv4Network | ipaddress.IPv6Network

STRING_OPS = frozenset(("contains", "icontains", "startswith", "endswith", "glob", "iglob",
                        "regex", "pmatch", "bcontains", "bstartswith"))
ORDER_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
ALLOWED: dict[FieldType, frozenset[str]] = {
    FieldType.STRING: frozenset(("=", "!=", "in", "intersects", "exists", *STRING_OPS)),
    FieldType.LIST: frozenset(("=", "!=", "in", "intersects", "exists", *STRING_OPS)),
    FieldType.INT: frozenset(("=", "!=", "in", "intersects", "exists", *ORDER_OPS)),
    FieldType.INTLIST: frozenset(("=", "!=", "in", "intersects", "exists", *ORDER_OPS)),
    FieldType.FLOAT: frozenset(("=", "!=", "in", "intersects", "exists", *ORDER_OPS)),
    FieldType.BOOL: frozenset(("=", "!=", "in", "intersects", "exists")),
    FieldType.IPADDR: frozenset(("=", "!=", "in", "intersects", "exists")),
    FieldType.IPLIST: frozenset(("=", "!=", "in", "intersects", "exists")),
    FieldType.DYN: frozenset(("=", "!=", "in", "intersects", "exists", *ORDER_OPS,
                              *STRING_OPS)),
}
MULTI = (FieldType.LIST, FieldType.IPLIST, FieldType.INTLIST)
# Operators whose test of several values is the `or` of its tests of each (Compiler.either).
MERGED_OPS = frozenset(("contains", "icontains", "startswith", "endswith"))
KNOWN_TYPES = frozenset(t for types in EVENT_TYPES.values() for t in types)


class BrokenMacro(Exception):
    """A macro whose own error was already reported; rules using it are skipped quietly."""


class Compiler:
    """Compiles conditions against one set of macros and lists; macros compile once each."""

    def __init__(self, macros: dict[str, Condition], lists: dict[str, list[str]]) -> None:
        self.macros = macros
        self.lists = lists
        self.compiled: dict[str, Pred] = {}
        self.broken: set[str] = set()
        self.why_broken: dict[str, str] = {}  # a broken macro's error, or the macro it uses
        self.macro_errors: list[RuleError] = []
        self.stack: list[str] = []

    # --- predicates ------------------------------------------------------------------------

    def compile(self, cond: Condition) -> Pred:
        """The closure for `cond`; raises a RuleError pointing into `cond.text`."""
        return self.node(cond.ast, cond)

    def node(self, node: Node, cond: Condition) -> Pred:
        if isinstance(node, Check):
            return self.check(node, cond)
        if isinstance(node, MacroRef):
            return self.macro(node, cond)
        if isinstance(node, Not):
            inner = self.node(node.expr, cond)
            return lambda ev: not inner(ev)
        if isinstance(node, Or):
            return _any(self.either(node.items, cond))
        return _all(tuple(self.node(item, cond) for item in node.items))

    def either(self, items: tuple[Node, ...], cond: Condition) -> tuple[Pred, ...]:
        """The predicates of an `or`'s items, where tests of one field by one of MERGED_OPS
        (`proc.cmdline icontains "a" or proc.cmdline icontains "b"`) are one test of all their
        values, in the place of the first: the field is extracted (and lowered) once, not once
        per test. Each item is compiled as written first, so errors point where they are."""
        parts: list[Pred] = []
        merged: dict[tuple[Any, ...], tuple[int, list[Check]]] = {}
        for item in items:
            pred = self.node(item, cond)
            if not isinstance(item, Check) or item.op not in MERGED_OPS or item.other is not None:
                parts.append(pred)
                continue
            key = (item.name, item.arg, item.transforms, item.op)
            if key in merged:
                merged[key][1].append(item)
                continue
            merged[key] = (len(parts), [item])
            parts.append(pred)
        for at, checks in merged.values():
            if len(checks) > 1:
                first = checks[0]
                get, ftype = self.operand(FieldRef(first.field, first.arg, first.name,
                                                   first.transforms, first.pos), cond)
                values = [v for check in checks for v in self.expand(check, cond)]
                parts[at] = _lift(get, self.test(ftype, first.op, values, cond), ftype in MULTI,
                                  False)
        return tuple(parts)

    def macro_by_name(self, name: str) -> Pred:
        """Compile a macro on its own (so errors in unused macros are found too)."""
        return self.macro(MacroRef(name, 0), self.macros[name])

    def macro(self, ref: MacroRef, cond: Condition) -> Pred:
        name = ref.name
        if name in self.compiled:
            return self.compiled[name]
        if name in self.broken:
            raise BrokenMacro(name)
        if name in self.stack:
            cycle = " -> ".join([*self.stack[self.stack.index(name):], name])
            raise MacroCycleError(f"macro cycle: {cycle}", cond.where, text=cond.text,
                                  pos=ref.pos, length=len(name), text_line=cond.text_line)
        body = self.macros.get(name)
        if body is None:
            raise UnknownMacroError(f"unknown macro {name!r}", cond.where, text=cond.text,
                                    pos=ref.pos, length=len(name), text_line=cond.text_line)
        self.stack.append(name)
        try:
            pred = self.compile(body)
        except MacroCycleError:
            if self.stack[0] != name:
                raise
            self.broken.add(name)
            raise
        except RuleError as exc:
            self.broken.add(name)
            self.why_broken[name] = exc.message
            self.macro_errors.append(exc)
            raise BrokenMacro(name) from exc
        except BrokenMacro as exc:
            self.broken.add(name)
            self.why_broken[name] = f"it uses macro {exc.args[0]!r}"
            raise BrokenMacro(name) from exc
        finally:
            self.stack.pop()
        self.compiled[name] = pred
        return pred

    def check(self, check: Check, cond: Condition) -> Pred:
        lhs = FieldRef(check.field, check.arg, check.name, check.transforms, check.pos)
        get, ftype = self.operand(lhs, cond)
        if check.op not in ALLOWED[ftype]:
            raise TypeMismatchError(
                f"type mismatch: operator {check.op!r} does not apply to {check.name} "
                f"({ftype.value})", cond.where, text=cond.text, pos=check.pos,
                length=len(check.name), text_line=cond.text_line)
        if check.op == "exists":
            return lambda ev: get(ev) is not None
        if check.other is not None:
            other, _ = self.operand(check.other, cond)
            return _between(get, other, _field_test(check.op), ftype in MULTI)
        values = self.expand(check, cond)
        if check.name == "evt.type" and not check.transforms:
            self.check_event_types(values, cond)
        if check.is_list and (check.op in ORDER_OPS or check.op == "!="):
            raise TypeMismatchError(f"operator {check.op!r} takes one value, not a list",
                                    cond.where, text=cond.text, pos=check.pos,
                                    length=len(check.name), text_line=cond.text_line)
        test = self.test(ftype, check.op, values, cond)
        if ftype not in MULTI and ftype not in (FieldType.IPADDR, FieldType.DYN) \
                and check.op in ("=", "in", "intersects"):
            return _member(get, [self.convert(ftype, v, check.op, cond) for v in values])
        return _lift(get, test, ftype in MULTI, check.op == "!=")

    def operand(self, ref: FieldRef, cond: Condition) -> tuple[Callable[[Event], Any], FieldType]:
        """The extractor of a field with its transformers applied, and the resulting type."""
        get = ref.field.extractor(ref.arg)
        ftype = field_type(ref.field, ref.arg)
        for name in ref.transforms:
            if ftype not in TRANSFORMABLE:
                raise TypeMismatchError(
                    f"type mismatch: {name}() does not apply to {ref.name} ({ftype.value})",
                    cond.where, text=cond.text, pos=ref.pos, length=len(ref.name),
                    text_line=cond.text_line)
            get = _transformed(get, TRANSFORMERS[name], ftype in MULTI and name != "len")
            ftype = FieldType.INT if name == "len" else \
                (ftype if ftype is FieldType.LIST else FieldType.STRING)
        return get, ftype

    def check_event_types(self, values: list[Value], cond: Condition) -> None:
        for value in values:
            if value.text not in KNOWN_TYPES:
                raise TypeMismatchError(f"unknown event type {value.text!r}", cond.where,
                                        text=cond.text, pos=value.pos, length=len(value.text),
                                        text_line=cond.text_line)

    def expand(self, check: Check, cond: Condition) -> list[Value]:
        """The operands, with named lists (unquoted list names) replaced by their items."""
        out: list[Value] = []
        for value in check.values:
            if check.is_list and not value.quoted and value.text in self.lists:
                out.extend(Value(item, True, value.pos) for item in self.lists[value.text])
            elif check.bare_list:
                raise UnknownListError(f"unknown list {value.text!r}", cond.where,
                                        text=cond.text, pos=value.pos, length=len(value.text),
                                        text_line=cond.text_line)
            else:
                out.append(value)
        return out

    # --- value tests -----------------------------------------------------------------------

    def test(self, ftype: FieldType, op: str, values: list[Value], cond: Condition) -> Test:
        literals = [self.convert(ftype, v, op, cond) for v in values]
        if ftype in (FieldType.IPADDR, FieldType.IPLIST):
            inside = _ip_test(literals)
            return (lambda v: not inside(v)) if op == "!=" else inside
        if op in ("=", "in", "intersects"):
            if len(literals) == 1 and ftype is not FieldType.DYN:
                only = literals[0]
                return lambda v: v == only
            members = frozenset(x for lit in literals
                                for x in (lit if ftype is FieldType.DYN else (lit,)))
            return _dyn_member(members) if ftype is FieldType.DYN else members.__contains__
        if op == "!=":
            lit = literals[0]
            if ftype is FieldType.DYN:
                inside = _dyn_member(lit)
                return lambda v: not inside(v)
            return lambda v: v != lit
        if op in ORDER_OPS:
            return _order_test(ORDER_OPS[op], literals[0], ftype)
        return _string_test(op, [str(v.text) for v in values], self, cond, values)

    def convert(self, ftype: FieldType, value: Value, op: str, cond: Condition) -> Any:
        text = value.text
        try:
            if ftype in (FieldType.INT, FieldType.INTLIST):
                return int(text, 0)
            if ftype is FieldType.FLOAT:
                return float(text)
            if ftype is FieldType.BOOL:
                return {"true": True, "false": False, "1": True, "0": False}[text.lower()]
            if ftype in (FieldType.IPADDR, FieldType.IPLIST):
                return canonical_net(ipaddress.ip_network(text, strict=False))
            if ftype is FieldType.DYN:
                return _dyn_forms(text)
        except (ValueError, KeyError):
            raise TypeMismatchError(
                f"type mismatch: {text!r} is not {_article(ftype)}", cond.where,
                text=cond.text, pos=value.pos, length=len(text) or 1,
                text_line=cond.text_line) from None
        return text

    # --- evt.type analysis -----------------------------------------------------------------

    def event_types(self, cond: Condition) -> frozenset[str] | None:
        """The evt.type values `cond` can match, or None when it does not constrain them."""
        return self.types_of(cond.ast, set())

    def types_of(self, node: Node, seen: set[str]) -> frozenset[str] | None:
        if isinstance(node, Check):
            if node.name == "evt.type" and node.op in ("=", "in", "intersects") \
                    and not node.transforms and node.other is None:
                texts = [v.text for v in node.values]
                expanded = [i for t in texts for i in self.lists.get(t, [t])]
                return frozenset(expanded)
            return None
        if isinstance(node, MacroRef):
            body = self.macros.get(node.name)
            if body is None or node.name in seen:
                return None
            return self.types_of(body.ast, seen | {node.name})
        if isinstance(node, Not):
            return None
        sets = [self.types_of(item, seen) for item in node.items]
        if isinstance(node, Or):
            if any(s is None for s in sets):
                return None
            return frozenset().union(*(s for s in sets if s is not None))
        known = [s for s in sets if s is not None]
        if not known:
            return None
        return frozenset.intersection(*known)


def _article(ftype: FieldType) -> str:
    return {
        FieldType.INT: "an integer", FieldType.INTLIST: "an integer",
        FieldType.FLOAT: "a number", FieldType.BOOL:
        "a boolean (true/false)", FieldType.IPADDR: "an IP address or CIDR",
        FieldType.IPLIST: "an IP address or CIDR",
    }.get(ftype, "a string")


def _dyn_forms(text: str) -> frozenset[Any]:
    try:
        return frozenset((text, int(text, 0)))
    except ValueError:
        return frozenset((text,))


def _all(parts: tuple[Pred, ...]) -> Pred:
    if len(parts) == 2:
        a, b = parts
        return lambda ev: a(ev) and b(ev)

    def all_(ev: Event) -> bool:
        for part in parts:  # noqa: SIM110 (a loop is faster than all() over a generator)
            if not part(ev):
                return False
        return True

    return all_


def _any(parts: tuple[Pred, ...]) -> Pred:
    if len(parts) == 2:
        a, b = parts
        return lambda ev: a(ev) or b(ev)

    def any_(ev: Event) -> bool:
        for part in parts:  # noqa: SIM110 (a loop is faster than any() over a generator)
            if part(ev):
                return True
        return False

    return any_


def _member(get: Callable[[Event], Any], literals: list[Any]) -> Pred:
    """Equality or membership without a wrapper: a missing value (None) is never a member."""
    if len(literals) == 1:
        only = literals[0]
        return lambda ev: get(ev) == only
    members = frozenset(literals)
    return lambda ev: get(ev) in members


def _lift(get: Callable[[Event], Any], test: Test, multi: bool, negated: bool) -> Pred:
    if multi and negated:
        return lambda ev: (v := get(ev)) is not None and all(test(x) for x in v)
    if multi:
        return lambda ev: (v := get(ev)) is not None and any(test(x) for x in v)

    def pred(ev: Event) -> bool:
        v = get(ev)
        return v is not None and test(v)

    return pred


# Addresses parsed from event text, remembered: a container talks to the same few peers, and
# ipaddress parsing costs microseconds. Bounded (LRU), the values are immutable.
_parse_ip = functools.lru_cache(maxsize=4096)(parse_ip)


def _ip_test(nets: list[IpNet]) -> Test:
    def test(value: Any) -> bool:
        addr = _parse_ip(value)
        if addr is None:
            return False
        return any(addr in net for net in nets)

    return test


def _dyn_member(members: frozenset[Any]) -> Test:
    """Membership for an int-or-string field: a rendered argument ("PTRACE_ATTACH") is a
    member by its text or by its number."""
    return lambda v: v in members or (type(v) is Rendered and v.raw in members)


def _order_test(cmp: Callable[[Any, Any], bool], lit: Any, ftype: FieldType) -> Test:
    if ftype is not FieldType.DYN:
        return lambda v: bool(cmp(v, lit))
    numbers = [x for x in lit if isinstance(x, int)]
    if not numbers:
        return lambda v: False
    number = numbers[0]

    def test(value: Any) -> bool:
        if type(value) is Rendered:
            value = value.raw
        return isinstance(value, int) and bool(cmp(value, number))

    return test


def _string_test(op: str, lits: list[str], compiler: Compiler, cond: Condition,
                 values: list[Value]) -> Test:
    if op == "contains":
        if len(lits) == 1:
            only = lits[0]
            return lambda v: only in str(v)

        def contains(v: Any) -> bool:
            text = str(v)
            return any(lit in text for lit in lits)

        return contains
    if op == "icontains":
        lowered = [lit.lower() for lit in lits]
        if len(lowered) == 1:
            needle = lowered[0]
            return lambda v: needle in str(v).lower()

        def icontains(v: Any) -> bool:
            low = str(v).lower()
            return any(lit in low for lit in lowered)

        return icontains
    if op == "startswith":
        prefixes = tuple(lits)
        return lambda v: str(v).startswith(prefixes)
    if op == "endswith":
        suffixes = tuple(lits)
        return lambda v: str(v).endswith(suffixes)
    if op == "pmatch":
        return _pmatch(lits)
    if op in ("bcontains", "bstartswith"):
        needles = [_hex_bytes(lit, cond, value) for lit, value in zip(lits, values, strict=True)]
        if op == "bcontains":
            return lambda v: any(n in _as_bytes(v) for n in needles)
        return lambda v: _as_bytes(v).startswith(tuple(needles))
    patterns = [_regex(op, lit, cond, value) for lit, value in zip(lits, values, strict=True)]
    if op in ("glob", "iglob"):
        return lambda v: any(p.fullmatch(str(v)) for p in patterns)
    return lambda v: any(p.search(str(v)) for p in patterns)


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8", "surrogateescape")


def _hex_bytes(text: str, cond: Condition, value: Value) -> bytes:
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise TypeMismatchError(f"type mismatch: {text!r} is not hex bytes (e.g. cafebabe)",
                                cond.where, text=cond.text, pos=value.pos,
                                length=len(text) or 1, text_line=cond.text_line) from None


def _regex(op: str, text: str, cond: Condition, value: Value) -> re.Pattern[str]:
    source = fnmatch.translate(text) if op in ("glob", "iglob") else text
    flags = re.DOTALL | (re.IGNORECASE if op == "iglob" else 0)
    try:
        return re.compile(source, flags)
    except re.error as exc:
        raise ConditionSyntaxError(f"bad regular expression: {exc}", cond.where,
                                   text=cond.text, pos=value.pos, length=len(text),
                                   text_line=cond.text_line) from None


def _pmatch(paths: Iterable[str]) -> Test:
    exact = frozenset(p.rstrip("/") or "/" for p in paths)
    prefixes = tuple(p if p.endswith("/") else p + "/" for p in exact)

    def test(value: Any) -> bool:
        path = str(value)
        return path in exact or path.startswith(prefixes)

    return test


# --- transformers and field-to-field comparisons (Falco's tolower(), ..., val()) ----------


def _b64(value: str) -> str | None:
    try:
        return base64.b64decode(value, validate=True).decode("utf-8", "surrogateescape")
    except (binascii.Error, ValueError):
        return None


TRANSFORMERS: dict[str, Callable[[Any], Any]] = {
    "tolower": lambda v: str(v).lower(),
    "toupper": lambda v: str(v).upper(),
    "b64": lambda v: _b64(str(v)),
    "basename": lambda v: str(v).rsplit("/", 1)[-1],
    "len": lambda v: len(v) if isinstance(v, str | bytes | tuple) else len(str(v)),
}
TRANSFORMABLE = frozenset((FieldType.STRING, FieldType.LIST, FieldType.DYN))


def _transformed(get: Callable[[Event], Any], transform: Callable[[Any], Any],
                 each: bool) -> Callable[[Event], Any]:
    """`get` with `transform` applied (to each item of a list field when `each`); a missing
    value stays missing, and so does one the transformer cannot make (bad base64)."""
    if each:
        def extract_each(ev: Event) -> Any:
            value = get(ev)
            if value is None:
                return None
            return tuple(t for t in map(transform, value) if t is not None)

        return extract_each

    def extract(ev: Event) -> Any:
        value = get(ev)
        return None if value is None else transform(value)

    return extract


def _field_test(op: str) -> Callable[[Any, Any], bool]:
    """How a value compares with another field's value (the right side of val())."""
    if op in ("=", "in", "intersects"):
        return lambda v, r: v in r if isinstance(r, tuple) else _same(v, r)
    if op == "!=":
        return lambda v, r: not _same(v, r)
    if op in ORDER_OPS:
        cmp = ORDER_OPS[op]

        def order(value: Any, right: Any) -> bool:
            a, b = _number(value), _number(right)
            return a is not None and b is not None and bool(cmp(a, b))

        return order
    if op == "contains":
        return lambda v, r: str(r) in str(v)
    if op == "icontains":
        return lambda v, r: str(r).lower() in str(v).lower()
    if op == "startswith":
        return lambda v, r: str(v).startswith(str(r))
    if op == "endswith":
        return lambda v, r: str(v).endswith(str(r))
    if op == "pmatch":
        return lambda v, r: _pmatch(r if isinstance(r, tuple) else (str(r),))(v)
    if op in ("glob", "iglob"):
        flags = re.DOTALL | (re.IGNORECASE if op == "iglob" else 0)
        return lambda v, r: re.fullmatch(fnmatch.translate(str(r)), str(v), flags) is not None
    if op == "bcontains":
        return lambda v, r: _as_bytes(r) in _as_bytes(v)
    if op == "bstartswith":
        return lambda v, r: _as_bytes(v).startswith(_as_bytes(r))
    return lambda v, r: _safe_search(str(r), str(v))


def _safe_search(pattern: str, text: str) -> bool:
    try:
        return re.search(pattern, text) is not None
    except re.error:
        return False


def _same(left: Any, right: Any) -> bool:
    if left == right:
        return True
    return str(left) == str(right)


def _number(value: Any) -> int | float | None:
    if type(value) is Rendered:
        return value.raw
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    try:
        return int(str(value), 0)
    except ValueError:
        return None


def _between(get: Callable[[Event], Any], other: Callable[[Event], Any],
             test: Callable[[Any, Any], bool], multi: bool) -> Pred:
    def pred(ev: Event) -> bool:
        left, right = get(ev), other(ev)
        if left is None or right is None:
            return False
        if multi:
            return any(test(v, right) for v in left)
        return test(left, right)

    return pred
