"""Which rules an open or an exec can match, without testing them: an open's by its path,
access mode and result, an exec's by its proc.name.

Most of what a container does is opens, and a default rule set has a dozen or more rules
about opens, each looking at a few paths (/etc, binary directories, credentials, history
files). The rules' own open clauses (rules.prefilter: the same derivation that tells the kernel
which opens to emit, so one source of truth) say which paths, modes and results each rule can
match; OpenIndex turns them into a few dict lookups and one tuple `startswith` per open, so an
open of /usr/lib/libc.so.6 is tested against the rules that may match it (often none) instead
of every rule about opens.

The index only ever narrows by what a rule's clauses rule out, and the clauses only ever widen
(a condition the derivation cannot reason about is unconstrained). Facets the index does not
judge are treated as unconstrained. A clause on the file type (fd.type = pipe: the rule about
reverse shells through pipes looks at FIFO opens) keeps its rule a candidate for every open of
a FIFO whatever its path; one asking for setuid/setgid bits, for every open whose mode argument
has one (evt.is_open_setid also asks for O_CREAT: wider, never narrower).

Execs are narrowed the same way by proc.name: most rules about execs name the programs they
watch (`proc.name in (network_tool_binaries)`), and an exec is tested against those naming its
program and the rules that name none.

The path judged is fd.name (FileEvent.path: the file opened, made absolute and normalized by
the process table), the same value the rules' fd.name, fd.directory, fd.filename and
evt.arg.name/path see.
"""

from __future__ import annotations

from collections.abc import Sequence
from stat import S_ISFIFO
from typing import TYPE_CHECKING

from cauditd.events import Event, FileEvent
from cauditd.rules.fields import FIELDS
from cauditd.rules.prefilter import FAILURE, READ, SUCCESS, WRITE, Clauses, open_modes

if TYPE_CHECKING:
    from cauditd.rules.ruleset import Rule

# One slot per (access modes, result) an open can have: modes READ, WRITE or both, success or
# failure. A clause allows a slot when it shares a mode with it and allows its result.
SLOTS = tuple((modes, result) for modes in (READ, WRITE, READ | WRITE)
              for result in (SUCCESS, FAILURE))
SETID_BITS = 0o6000
MAX_CACHED = 4096  # rule tuples kept by bit mask (bounded: paths are the process's to choose)
MAX_PATHS = 8192  # paths whose masks are kept (a server opens the same files again and again)

Masks = list[int]  # a rule bit mask per slot


def slot(modes: int, failed: bool) -> int:
    return (modes - 1) * 2 + failed


def _rules_of(rules: tuple[Rule, ...], mask: int,
              cache: dict[int, tuple[Rule, ...]]) -> tuple[Rule, ...]:
    """The rules whose bits are set in `mask`, in rule order (remembered by mask, bounded)."""
    found = cache.get(mask)
    if found is None:
        found = tuple(r for bit, r in enumerate(rules) if mask >> bit & 1)
        if len(cache) < MAX_CACHED:
            cache[mask] = found
    return found


class OpenIndex:
    """The candidate rules of one open type (`rules`, in rule order), narrowed by each rule's
    open clauses."""

    __slots__ = ("_by_path", "_cache", "_exact", "_fifo", "_free", "_names", "_prefix_any",
                 "_prefixes", "_setid", "rules")

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules = tuple(rules)
        self._free: Masks = [0] * len(SLOTS)  # rules that pass whatever the path
        self._setid: Masks = [0] * len(SLOTS)  # ... when the mode asks for setuid/setgid
        self._fifo: Masks = [0] * len(SLOTS)  # ... when the open opened a FIFO
        self._exact: dict[str, Masks] = {}
        self._names: dict[str, Masks] = {}
        prefixes: dict[str, Masks] = {}
        for bit, rule in enumerate(self.rules):
            self._add(1 << bit, rule.opens, prefixes)
        self._prefixes = tuple(prefixes.items())
        self._prefix_any = tuple(prefixes)  # one C-level test rejects most paths
        self._cache: dict[int, tuple[Rule, ...]] = {}
        self._by_path: dict[str, Masks] = {}

    def _add(self, bit: int, clauses: Clauses, prefixes: dict[str, Masks]) -> None:
        for clause in clauses:
            if clause.fifo:
                masks = self._fifo  # the path too, if any: not judged (wider)
            elif clause.setid:
                masks = self._setid  # the path too, if any: not judged (wider)
            elif clause.path is None:
                masks = self._free
            else:
                table = {"exact": self._exact, "name": self._names}.get(clause.path.kind, prefixes)
                masks = table.setdefault(clause.path.text, [0] * len(SLOTS))
            for i, (modes, result) in enumerate(SLOTS):
                if clause.modes & modes and clause.results & result:
                    masks[i] |= bit

    def candidates(self, event: Event) -> tuple[Rule, ...]:
        """The rules that may match `event`, an open of this index's type, in rule order."""
        if not isinstance(event, FileEvent):
            return self.rules
        i = slot(open_modes(event.type, event.flags), event.ret < 0)
        mask = self._free[i]
        if event.mode & SETID_BITS:
            mask |= self._setid[i]
        if S_ISFIFO(event.file_mode):
            mask |= self._fifo[i]
        path = event.path
        if path:
            masks = self._by_path.get(path)
            if masks is None:
                masks = self._path_masks(path)
            mask |= masks[i]
        return _rules_of(self.rules, mask, self._cache)

    def _path_masks(self, path: str) -> Masks:
        """The rules each slot's clauses with a path let through for `path`, remembered (the
        memory is emptied when full: bounded whatever paths a process makes up)."""
        found = [0] * len(SLOTS)
        tables = (self._exact.get(path), self._names.get(path.rpartition("/")[2]))
        prefixes = self._prefixes if path.startswith(self._prefix_any) else ()
        for masks in (*tables, *(m for prefix, m in prefixes if path.startswith(prefix))):
            if masks is not None:
                found = [a | b for a, b in zip(found, masks, strict=True)]
        if len(self._by_path) >= MAX_PATHS:
            self._by_path.clear()
        self._by_path[path] = found
        return found

class ExecIndex:
    """The candidate rules of one exec type (`rules`, in rule order), narrowed by the proc.name
    each rule's exec clauses allow (`proc.name = x`, `proc.name in (...)`): an exec of a
    program no rule names is tested against the rules that do not name one."""

    __slots__ = ("_cache", "_free", "_names", "_proc_name", "rules")

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules = tuple(rules)
        self._free = 0
        self._names: dict[str, int] = {}
        for bit, rule in enumerate(self.rules):
            for clause in rule.execs:
                if clause.name is None:
                    self._free |= 1 << bit
                else:
                    self._names[clause.name] = self._names.get(clause.name, 0) | 1 << bit
        self._proc_name = FIELDS["proc.name"].extractor(None)
        self._cache: dict[int, tuple[Rule, ...]] = {}

    def candidates(self, event: Event) -> tuple[Rule, ...]:
        """The rules that may match `event`, an exec of this index's type, in rule order."""
        mask = self._free | self._names.get(self._proc_name(event), 0)
        return _rules_of(self.rules, mask, self._cache)


class DirectionIndex:
    """The candidate rules of one network event type (`rules`, in rule order), by the
    direction of the event: a rule whose condition asks for `net.direction = egress` is not
    tried on ingress flows (Rule.directions, from rules.prefilter.directions)."""

    __slots__ = ("_by_direction", "_open", "rules")

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules = tuple(rules)
        self._open = tuple(r for r in self.rules if r.directions is None)
        named = {d for r in self.rules if r.directions is not None for d in r.directions}
        self._by_direction = {
            direction: tuple(r for r in self.rules
                             if r.directions is None or direction in r.directions)
            for direction in named
        }

    def candidates(self, event: Event) -> tuple[Rule, ...]:
        """The rules that may match `event`, a network event of this index's type."""
        return self._by_direction.get(getattr(event, "direction", ""), self._open)
