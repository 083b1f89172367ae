"""The Falco condition language: a scanner and recursive-descent parser to an AST with positions.

Grammar: expr := and ("or" and)*; and := not ("and" not)*; not := "not" not | primary;
primary := "(" expr ")" | operand op value | operand unary-op | macro-name;
operand := field | transformer "(" operand ")"; value := literal | list | "val(" field ")"
| transformer "(" operand ")". Fields take an argument in brackets: proc.aname[2],
proc.env[HOME], container.mount.dest[/etc], evt.arg[0].
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cauditd.rules.errors import ConditionSyntaxError, UnknownFieldError, Where
from cauditd.rules.fields import Field, lookup

BINARY_OPS = ("=", "!=", "<", "<=", ">", ">=", "contains", "icontains", "startswith",
              "endswith", "glob", "iglob", "regex", "bcontains", "bstartswith")
LIST_OPS = ("in", "intersects", "pmatch")
UNARY_OPS = ("exists",)
WORD_OPS = frozenset(o for o in (*BINARY_OPS, *LIST_OPS, *UNARY_OPS) if o.isalpha())

TRANSFORMERS = ("tolower", "toupper", "b64", "basename", "len")
MAX_DEPTH = 100  # parentheses, `not`s and transformers one inside another

_SYMBOL_OP = re.compile(r"==|!=|<=|>=|=|<|>")
_IDENT = re.compile(r"""[A-Za-z_][A-Za-z0-9_.\-]*(\[(?:"[^"]*"|'[^']*'|[^\]\s]*)\])?""")
_CALL = re.compile(r"(tolower|toupper|b64|basename|len|val)\(")
_BARE = re.compile(r"[^\s(),\"']+")
_WORD = re.compile(r"[A-Za-z_]+")


@dataclass(frozen=True, slots=True)
class Value:
    """A literal operand: `text`, whether it was quoted, and its offset in the condition."""

    text: str
    quoted: bool
    pos: int


@dataclass(frozen=True, slots=True)
class FieldRef:
    """A field as an operand: with its argument and the transformers around it (innermost
    first: `toupper(basename(fd.name))` is ("basename", "toupper"))."""

    field: Field
    arg: str | None
    name: str
    transforms: tuple[str, ...] = ()
    pos: int = 0


@dataclass(frozen=True, slots=True)
class Check:
    """`field op values`: one comparison. `values` is empty for `exists`; `transforms` are
    applied to the field's value first; `other` is a field compared against (`val(field)` or a
    transformer of one) instead of `values`."""

    field: Field
    arg: str | None
    name: str
    op: str
    values: tuple[Value, ...]
    is_list: bool
    pos: int
    bare_list: bool = False
    transforms: tuple[str, ...] = ()
    other: FieldRef | None = None


@dataclass(frozen=True, slots=True)
class MacroRef:
    """A macro used by name."""

    name: str
    pos: int


@dataclass(frozen=True, slots=True)
class Not:
    expr: Node
    pos: int


@dataclass(frozen=True, slots=True)
class And:
    items: tuple[Node, ...]
    pos: int


@dataclass(frozen=True, slots=True)
class Or:
    items: tuple[Node, ...]
    pos: int


Node = Check | MacroRef | Not | And | Or


@dataclass(frozen=True, slots=True)
class Condition:
    """A parsed condition with its text and origin, so later errors can point into it."""

    ast: Node
    text: str
    where: Where
    text_line: int = 0


class Parser:
    """Parses one condition; errors carry the position and the condition text."""

    def __init__(self, text: str, where: Where, text_line: int = 0) -> None:
        self.text = text
        self.where = where
        self.text_line = text_line
        self.pos = 0
        self.depth = 0

    def error(self, cls: type[ConditionSyntaxError] | type[UnknownFieldError], message: str,
              pos: int, length: int = 1) -> Exception:
        return cls(message, self.where, text=self.text, pos=pos, length=length,
                   text_line=self.text_line)

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek_word(self) -> str:
        self.skip_space()
        match = _WORD.match(self.text, self.pos)
        if match is None:
            return ""
        end = match.end()
        if end < len(self.text) and (self.text[end].isalnum() or self.text[end] in "._-["):
            return ""
        return match.group()

    def parse(self) -> Condition:
        self.skip_space()
        if self.pos >= len(self.text):
            raise self.error(ConditionSyntaxError, "empty condition", 0)
        node = self.parse_or()
        self.skip_space()
        if self.pos < len(self.text):
            if self.text[self.pos] == ")":
                raise self.error(ConditionSyntaxError, "unbalanced parenthesis: ')' without "
                                 "a matching '('", self.pos)
            raise self.error(ConditionSyntaxError, "expected 'and', 'or' or the end of the "
                             "condition", self.pos, self._token_len())
        return Condition(node, self.text, self.where, self.text_line)

    def _token_len(self) -> int:
        match = _BARE.match(self.text, self.pos)
        return len(match.group()) if match else 1

    def parse_or(self) -> Node:
        start = self.pos
        items = [self.parse_and()]
        while self.peek_word() == "or":
            self.pos += 2
            items.append(self.parse_and())
        return items[0] if len(items) == 1 else Or(tuple(items), start)

    def parse_and(self) -> Node:
        start = self.pos
        items = [self.parse_not()]
        while self.peek_word() == "and":
            self.pos += 3
            items.append(self.parse_not())
        return items[0] if len(items) == 1 else And(tuple(items), start)

    def parse_not(self) -> Node:
        if self.peek_word() == "not":
            start = self.pos
            self.pos += 3
            self.enter(start)
            node = Not(self.parse_not(), start)
            self.depth -= 1
            return node
        return self.parse_primary()

    def enter(self, pos: int) -> None:
        """One level deeper; a condition nested past MAX_DEPTH is refused (it would exhaust the
        stack of every pass that walks it)."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(ConditionSyntaxError, f"nested more than {MAX_DEPTH} deep", pos)

    def parse_primary(self) -> Node:
        self.skip_space()
        start = self.pos
        if start >= len(self.text):
            raise self.error(ConditionSyntaxError, "condition ends where a check was expected",
                             max(0, start - 1))
        if self.text[start] == "(":
            self.pos += 1
            self.enter(start)
            node = self.parse_or()
            self.depth -= 1
            self.skip_space()
            if self.pos >= len(self.text) or self.text[self.pos] != ")":
                raise self.error(ConditionSyntaxError, "unbalanced parenthesis: '(' is never "
                                 "closed", start)
            self.pos += 1
            return node
        call = _CALL.match(self.text, start)
        if call is not None and call.group(1) != "val":
            ref = self.parse_field_ref()
            op = self.read_op()
            if op is None:
                raise self.error(ConditionSyntaxError, "expected an operator after "
                                 f"{call.group(1)}(...)", self.pos, self._token_len())
            return self.parse_operands(ref.field, ref.arg, ref.name, op, ref.pos, ref.transforms)
        match = _IDENT.match(self.text, start)
        if match is None or match.group() in ("and", "or"):
            raise self.error(ConditionSyntaxError, "expected a field, a macro, 'not' or '('",
                             start, self._token_len())
        name = match.group()
        self.pos = match.end()
        op = self.read_op()
        if op is None:
            return MacroRef(name, start)
        field, arg = self.resolve(name, start)
        return self.parse_operands(field, arg, name, op, start)

    def resolve(self, name: str, start: int) -> tuple[Field, str | None]:
        resolved = lookup(name)
        if resolved is None:
            raise self.error(UnknownFieldError, f"unknown field {name!r}", start, len(name))
        return resolved

    def parse_field_ref(self) -> FieldRef:
        """A field, or a transformer (or val) around one: `tolower(proc.name)`."""
        self.skip_space()
        start = self.pos
        call = _CALL.match(self.text, start)
        if call is not None:
            self.pos = call.end()
            self.enter(start)
            inner = self.parse_field_ref()
            self.depth -= 1
            self.skip_space()
            if self.pos >= len(self.text) or self.text[self.pos] != ")":
                raise self.error(ConditionSyntaxError, f"unbalanced parenthesis: "
                                 f"{call.group(1)}( is never closed", start, len(call.group()))
            self.pos += 1
            if call.group(1) == "val":
                return inner
            return FieldRef(inner.field, inner.arg, inner.name,
                            (*inner.transforms, call.group(1)), inner.pos)
        match = _IDENT.match(self.text, start)
        if match is None:
            raise self.error(ConditionSyntaxError, "expected a field", start, self._token_len())
        self.pos = match.end()
        field, arg = self.resolve(match.group(), start)
        return FieldRef(field, arg, match.group(), (), start)

    def read_op(self) -> str | None:
        self.skip_space()
        symbol = _SYMBOL_OP.match(self.text, self.pos)
        if symbol is not None:
            self.pos = symbol.end()
            return "=" if symbol.group() == "==" else symbol.group()
        word = self.peek_word()
        if word in WORD_OPS:
            self.pos += len(word)
            return word
        return None

    def parse_operands(self, field: Field, arg: str | None, name: str, op: str,
                       start: int, transforms: tuple[str, ...] = ()) -> Check:
        if op in UNARY_OPS:
            return Check(field, arg, name, op, (), False, start, transforms=transforms)
        self.skip_space()
        if _CALL.match(self.text, self.pos):
            other = self.parse_field_ref()
            return Check(field, arg, name, op, (), False, start, transforms=transforms,
                         other=other)
        if self.pos < len(self.text) and self.text[self.pos] == "(":
            return Check(field, arg, name, op, self.parse_list(), True, start,
                         transforms=transforms)
        if op in LIST_OPS:
            # Falco also accepts a bare named list: `proc.name in shell_binaries`.
            return Check(field, arg, name, op, (self.parse_value(op),), True, start, True,
                         transforms)
        return Check(field, arg, name, op, (self.parse_value(op),), False, start,
                     transforms=transforms)

    def parse_list(self) -> tuple[Value, ...]:
        open_pos = self.pos
        self.pos += 1
        values: list[Value] = []
        self.skip_space()
        if self.pos < len(self.text) and self.text[self.pos] == ")":
            self.pos += 1
            return ()
        while True:
            values.append(self.parse_value("list"))
            self.skip_space()
            if self.pos >= len(self.text):
                raise self.error(ConditionSyntaxError, "unbalanced parenthesis: list is never "
                                 "closed", open_pos)
            if self.text[self.pos] == ")":
                self.pos += 1
                return tuple(values)
            if self.text[self.pos] != ",":
                raise self.error(ConditionSyntaxError, "expected ',' or ')' in the list",
                                 self.pos, self._token_len())
            self.pos += 1

    def parse_value(self, op: str) -> Value:
        self.skip_space()
        start = self.pos
        if start >= len(self.text):
            raise self.error(ConditionSyntaxError, f"missing value after {op!r}",
                             max(0, start - 1))
        quote = self.text[start]
        if quote in "\"'":
            return self.parse_quoted(quote, start)
        match = _BARE.match(self.text, start)
        if match is None:
            raise self.error(ConditionSyntaxError, f"missing value after {op!r}", start)
        self.pos = match.end()
        return Value(match.group(), False, start)

    def parse_quoted(self, quote: str, start: int) -> Value:
        out: list[str] = []
        i = start + 1
        while i < len(self.text):
            ch = self.text[i]
            if ch == "\\" and i + 1 < len(self.text) and self.text[i + 1] in (quote, "\\"):
                out.append(self.text[i + 1])
                i += 2
                continue
            if ch == quote:
                self.pos = i + 1
                return Value("".join(out), True, start)
            out.append(ch)
            i += 1
        raise self.error(ConditionSyntaxError, "unterminated string", start)


def parse_condition(text: str, where: Where | None = None, text_line: int = 0) -> Condition:
    """Parse one condition; raises ConditionSyntaxError or UnknownFieldError with a caret."""
    return Parser(text, where or Where(), text_line).parse()
