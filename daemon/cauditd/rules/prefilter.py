"""Which opens the kernel may drop: those no loaded rule can match, by path and access mode.

Opens are most of what a container's syscalls are, and most rules about files look at a few
paths (/etc, binary directories, credentials). From each rule's condition (macros and lists
expanded) we derive a condition every open it matches must meet: a set of clauses, each a
path pattern (a prefix, an exact path or a file name, or any path) with the access modes it
needs. The union over the rules goes to the kernel (probes/syscalls.c), which emits an open
only when some clause matches it.

The derivation only ever widens: what it cannot reason about (negations, other fields, an
intersection it cannot express) becomes "any path", so the kernel lets through everything a
rule could match and, on a rule set that looks at every open, everything. Paths the kernel
cannot judge as they are pass too: relative ones (user space makes them absolute with the
process's cwd), and absolute ones with "//", "." or ".." components (user space normalizes
them, so "/etc/./shadow" meets the rule about "/etc/shadow").
"""

from __future__ import annotations

import itertools
import posixpath
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from cauditd.proctable import normalize_path
from cauditd.rules.parser import And, Check, MacroRef, Node, Not, Or

READ, WRITE = 1, 2
ANY_MODE = READ | WRITE
OPEN_TYPES = frozenset(("open", "openat", "openat2", "creat"))
PATH_MAX_KEY = 255  # bytes of a path the kernel's prefix trie compares (probes/syscalls.c)
NAME_MAX_KEY = 31  # bytes of a file name the kernel's name table holds
MAX_CLAUSES = 4096  # beyond this an intersection keeps its smaller side (still a superset)
_GLOB_CHARS = "*?["


@dataclass(frozen=True, slots=True, order=True)
class Clause:
    """Opens of a path pattern with any of `modes` (READ, WRITE).

    kind: "any" (every path), "prefix" (paths starting with text), "exact" (the path text),
    "name" (paths whose last component is text).
    """

    kind: str
    text: str
    modes: int

    def passes(self, path: str, modes: int) -> bool:
        if not self.modes & modes:
            return False
        if self.kind == "any":
            return True
        if self.kind == "prefix":
            return path.startswith(self.text)
        if self.kind == "exact":
            return path == self.text
        return posixpath.basename(path) == self.text


ANYTHING = frozenset({Clause("any", "", ANY_MODE)})
NOTHING: frozenset[Clause] = frozenset()


@dataclass(frozen=True, slots=True)
class OpenFilter:
    """The opens some rule may match, as the kernel applies it (see `passes`)."""

    clauses: frozenset[Clause]

    @property
    def any_modes(self) -> int:
        """Modes for which every path passes."""
        modes = 0
        for clause in self.clauses:
            if clause.kind == "any":
                modes |= clause.modes
        return modes

    @property
    def is_everything(self) -> bool:
        return self.any_modes == ANY_MODE

    def prefixes(self) -> dict[str, int]:
        """Prefix-trie entries: prefixes, and exact paths ending in NUL, with their modes.

        The kernel's trie answers with the longest matching entry only, so each entry also
        carries the modes of every shorter entry that is a prefix of it.
        """
        entries: dict[str, int] = {}
        for clause in self.clauses:
            if clause.kind in ("prefix", "exact"):
                key = clause.text if clause.kind == "prefix" else clause.text + "\0"
                entries[key] = entries.get(key, 0) | clause.modes
        return {key: modes | _inherited(key, entries) for key, modes in entries.items()}

    def names(self) -> dict[str, int]:
        names: dict[str, int] = {}
        for clause in self.clauses:
            if clause.kind == "name":
                names[clause.text] = names.get(clause.text, 0) | clause.modes
        return names

    def passes(self, path: str, modes: int) -> bool:
        """Whether the kernel emits an open of `path` with `modes` (its model, for tests)."""
        if not path.startswith("/") or path != normalize_path(path):
            return True
        return any(clause.passes(path, modes) for clause in self.clauses)

    def describe(self) -> str:
        if self.is_everything:
            return "every open"
        counts = {kind: sum(1 for c in self.clauses if c.kind == kind)
                  for kind in ("prefix", "exact", "name")}
        mode_names = {READ: "reads", WRITE: "writes"}.get(self.any_modes)
        parts = [f"{n} {kind}es" if kind == "prefix" else f"{n} {kind}s"
                 for kind, n in counts.items() if n]
        if mode_names:
            parts.append(f"all {mode_names}")
        return "opens of " + ", ".join(parts) if parts else "no opens"


def _inherited(key: str, entries: Mapping[str, int]) -> int:
    modes = 0
    for other, other_modes in entries.items():
        if other != key and not other.endswith("\0") and key.startswith(other):
            modes |= other_modes
    return modes


def open_modes(evt_type: str, flags: int) -> int:
    """READ/WRITE of an open as the kernel computes it (fields evt.is_open_read/write)."""
    if evt_type == "creat":
        return WRITE
    return {0: READ, 1: WRITE}.get(flags & 0o3, ANY_MODE)


class OpenFilterDeriver:
    """Derives a condition's clauses; `macros` and `lists` are the compiler's."""

    def __init__(self, macros: Mapping[str, object], lists: Mapping[str, list[str]]) -> None:
        self._macros = macros
        self._lists = lists

    def clauses(self, node: Node, seen: frozenset[str] = frozenset()) -> frozenset[Clause]:
        if isinstance(node, Check):
            return self._check(node)
        if isinstance(node, MacroRef):
            body = self._macros.get(node.name)
            ast = getattr(body, "ast", None)
            if ast is None or node.name in seen:
                return ANYTHING
            return self.clauses(ast, seen | {node.name})
        if isinstance(node, Not):
            return ANYTHING
        parts = [self.clauses(item, seen) for item in node.items]
        if isinstance(node, Or):
            return _simplify(frozenset().union(*parts))
        assert isinstance(node, And)
        result = ANYTHING
        for part in parts:
            result = _intersect(result, part)
        return result

    def _values(self, check: Check) -> list[str]:
        return [item for v in check.values for item in self._lists.get(v.text, [v.text])]

    def _check(self, check: Check) -> frozenset[Clause]:
        values = self._values(check)
        name = _SAME_AS_FD_NAME.get(check.name, check.name)
        if name in _ABSENT_ON_OPENS:
            return NOTHING  # a missing field matches nothing, whatever the operator
        maker = _LEAVES.get((name, check.op))
        if check.name == "evt.type" and check.op in ("=", "in", "intersects"):
            return ANYTHING if OPEN_TYPES & set(values) else NOTHING
        if check.name in ("evt.is_open_read", "evt.is_open_write") and check.op == "=" \
                and [v.lower() for v in values] == ["true"]:
            return frozenset({Clause("any", "", READ if check.name.endswith("read") else WRITE)})
        if maker is None or not values:
            return ANYTHING
        return _simplify(frozenset(maker(v) for v in values))


def _prefix_of_glob(pattern: str) -> Clause:
    cut = min((pattern.index(c) for c in _GLOB_CHARS if c in pattern), default=len(pattern))
    if cut == len(pattern):
        return _exact(pattern)
    return Clause("prefix", pattern[:cut], ANY_MODE) if cut else Clause("any", "", ANY_MODE)


def _exact(path: str) -> Clause:
    if not path.startswith("/") or len(path.encode()) >= PATH_MAX_KEY:
        return Clause("any", "", ANY_MODE)
    return Clause("exact", path, ANY_MODE)


def _prefix(path: str) -> Clause:
    if not path.startswith("/") or len(path.encode()) > PATH_MAX_KEY:
        return Clause("any", "", ANY_MODE)
    return Clause("prefix", path, ANY_MODE)


def _name(name: str) -> Clause:
    if not name or "/" in name or len(name.encode()) > NAME_MAX_KEY:
        return Clause("any", "", ANY_MODE)
    return Clause("name", name, ANY_MODE)


def _directory(directory: str) -> Clause:
    return _prefix(directory.rstrip("/") + "/")


_ARG_FIELDS = ("evt.arg", "evt.rawarg")
_SAME_AS_FD_NAME = {f"{field}.{arg}": "fd.name" for field in _ARG_FIELDS
                    for arg in ("name", "path", "pathname", "oldpath")}
_ABSENT_ON_OPENS = frozenset(f"{field}.{arg}" for field in _ARG_FIELDS
                             for arg in ("newpath", "linkpath", "target"))

_LEAVES: dict[tuple[str, str], Callable[[str], Clause]] = {
    ("fd.name", "="): _exact,
    ("fd.name", "in"): _exact,
    ("fd.name", "startswith"): _prefix,
    ("fd.name", "pmatch"): _prefix,
    ("fd.name", "glob"): _prefix_of_glob,
    ("fd.directory", "="): _directory,
    ("fd.directory", "in"): _directory,
    ("fd.directory", "startswith"): _prefix,
    ("fd.directory", "pmatch"): _prefix,
    ("fd.filename", "="): _name,
    ("fd.filename", "in"): _name,
}


def _meet(a: Clause, b: Clause) -> Clause | None:
    """A clause covering every open both match (exactly, or wider when not expressible)."""
    modes = a.modes & b.modes
    if not modes:
        return None
    if a.kind == "any" or b.kind == "any":
        path_side = b if a.kind == "any" else a
        return Clause(path_side.kind, path_side.text, modes)
    if a.kind > b.kind:
        a, b = b, a
    # kinds are now ordered: exact < name < prefix
    if a.kind == b.kind == "prefix":
        longer, shorter = (a, b) if len(a.text) >= len(b.text) else (b, a)
        return Clause("prefix", longer.text, modes) if longer.text.startswith(shorter.text) \
            else None
    if a.kind == b.kind:  # two exact paths, or two names
        return Clause(a.kind, a.text, modes) if a.text == b.text else None
    if a.kind == "exact":
        fits = b.text == posixpath.basename(a.text) if b.kind == "name" \
            else a.text.startswith(b.text)
        return Clause("exact", a.text, modes) if fits else None
    return Clause("name", a.text, modes)  # a name within a prefix: keep the name (wider)


def _intersect(left: frozenset[Clause], right: frozenset[Clause]) -> frozenset[Clause]:
    if left == ANYTHING:
        return right
    if right == ANYTHING:
        return left
    if len(left) * len(right) > MAX_CLAUSES:
        return left if len(left) <= len(right) else right
    met = (_meet(a, b) for a, b in itertools.product(left, right))
    return _simplify(frozenset(c for c in met if c is not None))


def _simplify(clauses: Iterable[Clause]) -> frozenset[Clause]:
    """Drop clauses whose modes an "any path" clause already covers."""
    clauses = frozenset(clauses)
    any_modes = 0
    for clause in clauses:
        if clause.kind == "any":
            any_modes |= clause.modes
    if not any_modes:
        return clauses
    kept = {c for c in clauses if c.kind != "any" and c.modes & ~any_modes}
    kept = {Clause(c.kind, c.text, c.modes & ~any_modes) for c in kept}
    return frozenset({Clause("any", "", any_modes), *kept})


def union(filters: Iterable[frozenset[Clause]]) -> OpenFilter:
    return OpenFilter(_simplify(frozenset().union(*filters)))
