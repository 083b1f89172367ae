"""Output templates: Falco's `%field` placeholders, resolved once, rendered per finding."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cauditd.events import Event
from cauditd.rules.errors import UnknownFieldError, Where
from cauditd.rules.fields import lookup

MISSING = "<NA>"
_PLACEHOLDER = re.compile(r"%([A-Za-z_][A-Za-z0-9_.]*(?:\[[^\]\s]*\])?)")


@dataclass(frozen=True, slots=True)
class OutputTemplate:
    """A parsed output: literal text and (field name, extractor) pairs in order."""

    text: str
    parts: tuple[str | tuple[str, Callable[[Event], Any]], ...]

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(p[0] for p in self.parts if isinstance(p, tuple))

    def render(self, event: Event) -> tuple[str, dict[str, Any]]:
        """The output text and the values of the fields it used (None when missing)."""
        out: list[str] = []
        fields: dict[str, Any] = {}
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            name, get = part
            value = get(event)
            fields[name] = json_value(value)
            out.append(format_value(value))
        return "".join(out), fields


def format_value(value: Any) -> str:
    """A field value as output text: <NA> when missing, true/false, lists joined by commas."""
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple | list):
        return ",".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def json_value(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def parse_output(text: str, where: Where, text_line: int = 0) -> OutputTemplate:
    """Resolve every %field of `text`; an unknown one raises UnknownFieldError with a caret."""
    parts: list[str | tuple[str, Callable[[Event], Any]]] = []
    last = 0
    for match in _PLACEHOLDER.finditer(text):
        name = match.group(1).rstrip(".")
        end = match.start(1) + len(name)
        resolved = lookup(name)
        if resolved is None:
            raise UnknownFieldError(f"unknown field {name!r} in output", where, text=text,
                                    pos=match.start(), length=len(name) + 1, text_line=text_line)
        field, arg = resolved
        parts.append(text[last : match.start()])
        parts.append((name, field.extractor(arg)))
        last = end
    parts.append(text[last:])
    return OutputTemplate(text, tuple(p for p in parts if p != ""))
