"""Load rule files: each file read by its format's reader into the one model, then compiled.

TOML files (`.toml`, cauditd's format) and Falco rule files (`.yaml`, `.yml`) may be mixed;
later files change what earlier ones defined. Every problem in every file is collected:
`load_ruleset` raises them together as RuleSetError, `check` returns them; what Falco files
hold that cannot load is skipped and reported as Notices (RuleSet.notices).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import cauditd
from cauditd.findings import Priority
from cauditd.rules.builder import Build, build
from cauditd.rules.errors import RuleError, RuleSetError, TomlSyntaxError, Where
from cauditd.rules.model import RuleBook, RuleFile
from cauditd.rules.read_falco import read_falco
from cauditd.rules.read_toml import read_toml
from cauditd.rules.ruleset import RuleSet

READERS: dict[str, Callable[[Path], RuleFile]] = {
    ".toml": read_toml, ".yaml": read_falco, ".yml": read_falco,
}


def default_rules_dir() -> Path:
    """The shipped rules: inside the wheel (`_data/rules`), else the repository's `rules/`."""
    package = Path(cauditd.__file__).parent
    packaged = package / "_data" / "rules"
    return packaged if packaged.is_dir() else package.parents[1] / "rules"


def rule_files(paths: Sequence[Path]) -> tuple[list[Path], list[RuleError]]:
    """Files in load order: a directory gives its rule files sorted by name. A missing path
    without a rule file's suffix is an empty directory (like an absent /etc/cauditd/rules.d)."""
    files: list[Path] = []
    errors: list[RuleError] = []
    for path in map(Path, paths):
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir()
                                if p.suffix in READERS and p.is_file()))
        elif path.is_file():
            files.append(path)
        elif path.suffix in READERS:
            errors.append(TomlSyntaxError("no such file", Where(str(path))))
    return files, errors


def read_file(path: Path) -> RuleFile:
    """One file through its format's reader (TOML unless it is named .yaml or .yml)."""
    return READERS.get(path.suffix, read_toml)(path)


def read_book(paths: Sequence[Path]) -> RuleBook:
    """Every file of `paths`, read and applied in order."""
    book = RuleBook()
    files, book.errors = rule_files(paths)
    for path in files:
        book.add_file(read_file(path))
    return book


def compile_paths(paths: Sequence[Path], min_priority: Priority = Priority.DEBUG) -> Build:
    """Rules, errors and notices of the rule files at `paths`."""
    return build(read_book(paths), min_priority)


def load_ruleset(paths: Sequence[Path], *, min_priority: Priority = Priority.DEBUG) -> RuleSet:
    """Load and compile rule files (later ones change earlier ones); raises RuleSetError."""
    result = compile_paths(paths, min_priority)
    if result.errors:
        raise RuleSetError(result.errors)
    return RuleSet(result.rules, notices=result.notices)


def check(paths: Sequence[Path]) -> list[RuleError]:
    """Every problem in every file (empty when the rules load)."""
    return compile_paths(paths).errors
