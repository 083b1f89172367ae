"""Rule errors: one `RuleError(ValueError)` family, each carrying file:line and a caret pointer."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Where:
    """Where a rule item came from: file, line of its definition, and the item ("rule 'X'")."""

    file: str = "<string>"
    line: int = 0
    item: str = ""


class RuleError(ValueError):
    """A problem in a rule file; `str()` gives "file:line: item: message" and a caret line."""

    def __init__(
        self,
        message: str,
        where: Where | None = None,
        *,
        text: str = "",
        pos: int = -1,
        length: int = 1,
        text_line: int = 0,
    ) -> None:
        self.message = message
        self.where = where or Where()
        self.text = text
        self.pos = pos
        self.length = max(1, length)
        self.text_line = text_line
        super().__init__(self.render())

    @property
    def file(self) -> str:
        return self.where.file

    @property
    def line(self) -> int:
        """Line of the error: the condition's own line when the error points into it."""
        if self.pos >= 0 and self.text_line:
            return self.text_line + self.text.count("\n", 0, self.pos)
        return self.where.line

    def render(self) -> str:
        head = f"{self.file}:{self.line}: " if self.line else f"{self.file}: "
        if self.where.item:
            head += f"{self.where.item}: "
        head += self.message
        if self.pos < 0 or not self.text:
            return head
        start = self.text.rfind("\n", 0, self.pos) + 1
        end = self.text.find("\n", self.pos)
        line_text = self.text[start : end if end >= 0 else len(self.text)]
        col = self.pos - start
        width = max(1, min(self.length, len(line_text) - col))
        return f"{head}\n    {line_text}\n    {' ' * col}{'^' * width}"


class TomlSyntaxError(RuleError):
    """The file is not valid TOML (or not readable)."""


class SchemaError(RuleError):
    """A rule, list or macro has a missing key, an unknown key or a value of the wrong type."""


class PriorityError(SchemaError):
    """A priority that is not one of Falco's eight levels."""


class OverrideError(SchemaError):
    """An override (append/replace) of something that is not defined, or of a key it cannot."""


class ConditionSyntaxError(RuleError):
    """A condition that does not parse: unbalanced parenthesis, missing value, stray token."""


class UnknownFieldError(RuleError):
    """A condition or output names a field the registry does not have."""


class UnknownMacroError(RuleError):
    """A condition names a macro that is not defined."""


class UnknownListError(UnknownMacroError):
    """A condition names a list (`in name`) that is not defined."""


class MacroCycleError(RuleError):
    """Macros that use each other in a cycle."""


class TypeMismatchError(RuleError):
    """A value or operator that does not fit the field's type (`proc.pid = bash`)."""


@dataclass(frozen=True, slots=True)
class Notice:
    """Not an error: a rule or macro of a Falco file skipped (why, in one line), or what a
    file's requirement (engine, plugin) means here. The rest of the rules load."""

    where: Where
    message: str

    def __str__(self) -> str:
        head = f"{self.where.file}:{self.where.line}: " if self.where.line else \
            f"{self.where.file}: "
        item = f"{self.where.item}: " if self.where.item else ""
        return f"{head}{item}{self.message}"


class RuleSetError(ValueError):
    """A rule set that cannot be loaded; `errors` holds every problem in every file."""

    def __init__(self, errors: list[RuleError]) -> None:
        self.errors = errors
        count = f"{len(errors)} error{'s' if len(errors) != 1 else ''}"
        super().__init__(f"{count} in rules:\n" + "\n".join(str(e) for e in errors))
