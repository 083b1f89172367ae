"""What the kernel may drop: the opens, connects, dups and sockets no loaded rule can match.

Opens and connects are most of what a container's syscalls are, and most rules about them look
at a few paths (/etc, binary directories, credentials) or a few destinations (mining ports, the
cloud metadata address). From each rule's condition (macros and lists expanded) we derive a
condition every open, or every connect, it matches must meet: a set of clauses (a disjunction),
each a conjunction of constraints on the facets the kernel can test: the path, access mode,
result (success or failure), requested setuid/setgid bits and file type (a FIFO) of an open,
the destination port and address of a connect, sendto or sendmsg, whether the connecting
process's stdin and stdout are pipes, whether the fd a dup places on fd 0-2 is a socket, the
address family of a new socket and whether it landed on fd 0-2 (a reverse shell's). The
union over the rules goes to the kernel (probes/filters.h, opens.h), which emits such a syscall
only when some clause matches it.

The path the kernel judges is the one rules see as fd.name: for an open that succeeded, the
file the kernel opened, resolved through symlinks, the dirfd, the cwd and mounts (with the
kernel's layout; see probes/opens.h), so a symlinked directory cannot hide an open of a
watched file. An open that failed opened nothing, and is judged by its path as written.

The derivation only ever widens: what it cannot reason about (negations, other fields, an
intersection it cannot express) becomes "unconstrained", so the kernel lets through everything
a rule could match and, on a rule set that looks at every open, every open. Paths the kernel
cannot judge as written pass too: relative paths of failed opens (user space joins them with
the directory the kernel reports), and absolute ones with "//", "." or ".." components (user
space normalizes them, so "/etc/./shadow" meets the rule about "/etc/shadow"); so do connects
of families other than IPv4 and IPv6. Without the kernel's layout every open is judged by its
path as written, as failed ones are.
"""

from __future__ import annotations

import ipaddress
import itertools
import posixpath
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace

from cauditd.proctable import normalize_path
from cauditd.rules.args import SOCKET_FAMILIES, enum_names
from cauditd.rules.fields import OPEN_TYPES
from cauditd.rules.parser import And, Check, MacroRef, Node, Not, Or

READ, WRITE = 1, 2
ANY_MODE = READ | WRITE
SUCCESS, FAILURE = 1, 2  # the results an open clause allows
ANY_RESULT = SUCCESS | FAILURE
SETID_MODES = ("S_ISUID", "S_ISGID")
WIRED_FIELD = "proc.stdio_wired_to_network"  # known from connects and accepts of piped processes
CONNECT_TYPES = frozenset(("connect", "sendto", "sendmsg", "sendmmsg"))
ACCEPT_TYPES = frozenset(("accept", "accept4"))
EXEC_TYPES = frozenset(("execve", "execveat"))
DUP_TYPES = frozenset(("dup", "dup2", "dup3", "fcntl"))
SOCKET_TYPES = frozenset(("socket",))
DOMAIN_BITS = 64  # address families as bits of a mask; those >= 63 share the last bit
ANY_DOMAIN = (1 << DOMAIN_BITS) - 1
PATH_MAX_KEY = 255  # bytes of a path the kernel's prefix trie compares (probes/syscalls.c)
NAME_MAX_KEY = 31  # bytes of a file name the kernel's name table holds
MAX_CLAUSES = 4096  # beyond this an intersection keeps its smaller side (still a superset)
_GLOB_CHARS = "*?["

Net = ipaddress.IPv6Network  # IPv4 as IPv4-mapped IPv6 (::ffff:a.b.c.d), as the kernel keys it


@dataclass(frozen=True, slots=True)
class PathPattern:
    """"prefix" (paths starting with text), "exact" (the path text) or "name" (paths whose last
    component is text)."""

    kind: str
    text: str

    def matches(self, path: str) -> bool:
        if self.kind == "prefix":
            return path.startswith(self.text)
        if self.kind == "exact":
            return path == self.text
        return posixpath.basename(path) == self.text


@dataclass(frozen=True, slots=True)
class Clause:
    """A conjunction of constraints; None (or ANY_MODE, ANY_RESULT) leaves a facet
    unconstrained."""

    path: PathPattern | None = None
    modes: int = ANY_MODE
    results: int = ANY_RESULT
    setid: bool = False  # the open asks for setuid/setgid bits (its mode argument)
    fifo: bool = False  # the open opened a FIFO
    port: int | None = None
    net: Net | None = None
    piped: bool = False  # the connecting or accepting process is piped (call_of_piped_process)
    socket: bool = False  # the dup's old fd must be a socket
    outbound: bool = False  # ... and not the server's end of a connection (accepted)
    domains: int = ANY_DOMAIN  # a new socket's address family (domain_bit of each allowed)
    stdio: bool = False  # ... and it landed on fd 0, 1 or 2
    name: str | None = None  # an exec's proc.name (for the engine's index, not the kernel)

    @property
    def any_path(self) -> bool:
        """Constrains an open by nothing but its mode (and result)."""
        return self.path is None and not self.setid and not self.fifo

    def passes_open(self, path: str, modes: int) -> bool:
        return bool(self.modes & modes) and (self.path is None or self.path.matches(path))


Clauses = frozenset[Clause]
ANYTHING: Clauses = frozenset({Clause()})
NOTHING: Clauses = frozenset()


def as_net(text: str) -> Net | None:
    """An address or CIDR as the kernel keys it; None when it is neither."""
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None
    if isinstance(net, ipaddress.IPv4Network):
        mapped = ipaddress.IPv6Address(b"\0" * 10 + b"\xff\xff" + net.network_address.packed)
        return ipaddress.IPv6Network((mapped, 96 + net.prefixlen))
    return net


# --- the filters the kernel applies ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OpenFilter:
    """The opens some rule may match (see `passes`, the kernel's behaviour)."""

    clauses: Clauses

    @property
    def any_modes(self) -> int:
        """Modes for which every path passes."""
        modes = 0
        for clause in self.clauses:
            if clause.any_path:
                modes |= clause.modes
        return modes

    @property
    def setid_modes(self) -> int:
        """Modes for which every open asking for setuid/setgid bits passes."""
        return sum_modes(c for c in self.clauses if c.setid)

    @property
    def fifo(self) -> bool:
        """Opens of FIFOs pass, wherever they are."""
        return any(c.fifo for c in self.clauses)

    @property
    def failed(self) -> bool:
        """Whether some rule can match an open that failed (else the kernel drops them all)."""
        return any(c.results & FAILURE for c in self.clauses)

    @property
    def is_everything(self) -> bool:
        return self.any_modes == ANY_MODE and self.failed

    def prefixes(self) -> dict[str, int]:
        """Prefix-trie entries: prefixes, and exact paths ending in NUL, with their modes.

        The kernel's trie answers with the longest matching entry only, so each entry also
        carries the modes of every shorter entry that is a prefix of it.
        """
        entries: dict[str, int] = {}
        for clause in self.clauses:
            if clause.path is not None and clause.path.kind != "name":
                key = clause.path.text + ("\0" if clause.path.kind == "exact" else "")
                entries[key] = entries.get(key, 0) | clause.modes
        return {key: modes | _inherited(key, entries) for key, modes in entries.items()}

    def names(self) -> dict[str, int]:
        names: dict[str, int] = {}
        for clause in self.clauses:
            if clause.path is not None and clause.path.kind == "name":
                names[clause.path.text] = names.get(clause.path.text, 0) | clause.modes
        return names

    def passes(self, path: str, modes: int, *, failed: bool = False, setid: bool = False,
               fifo: bool = False) -> bool:
        """Whether the kernel emits an open with `modes` of `path`: the resolved file of an
        open that succeeded, or the path as written of one that `failed`; `setid` when its
        mode argument asks for setuid/setgid bits, `fifo` when it opened a FIFO."""
        if self.is_everything:
            return True
        if failed and not self.failed:
            return False
        if modes & self.any_modes or (setid and modes & self.setid_modes):
            return True
        if fifo and not failed and self.fifo:
            return True
        if not path.startswith("/") or path != normalize_path(path):
            return True
        if len(path.encode()) >= PATH_MAX_KEY:
            return True  # longer than the kernel's keys
        return any(clause.passes_open(path, modes) for clause in self.clauses
                   if clause.path is not None)

    def describe(self) -> str:
        if self.is_everything:
            return "every open"
        kinds = [c.path.kind for c in self.clauses if c.path is not None]
        parts = [f"{kinds.count(kind)} {label}" for kind, label in
                 (("prefix", "prefixes"), ("exact", "exacts"), ("name", "names"))
                 if kind in kinds]
        mode_names = {READ: "reads", WRITE: "writes", ANY_MODE: "opens"}.get(self.any_modes)
        if mode_names:
            parts.append(f"all {mode_names}")
        if self.setid_modes:
            parts.append("setuid/setgid creations")
        if self.fifo:
            parts.append("FIFOs")
        if self.clauses and not self.failed:
            parts.append("successful only")
        return "opens of " + ", ".join(parts) if parts else "no opens"


def sum_modes(clauses: Iterable[Clause]) -> int:
    modes = 0
    for clause in clauses:
        modes |= clause.modes
    return modes


def _inherited(key: str, entries: Mapping[str, int]) -> int:
    modes = 0
    for other, other_modes in entries.items():
        if other != key and not other.endswith("\0") and key.startswith(other):
            modes |= other_modes
    return modes


_ACCESS_MODES = (READ, WRITE, ANY_MODE, ANY_MODE)  # by O_ACCMODE: O_RDONLY, O_WRONLY, O_RDWR, 3


def open_modes(evt_type: str, flags: int) -> int:
    """READ/WRITE of an open as the kernel computes it (fields evt.is_open_read/write)."""
    if evt_type == "creat":
        return WRITE
    return _ACCESS_MODES[flags & 0o3]


@dataclass(frozen=True, slots=True)
class ConnectFilter:
    """The connects and addressed sendtos some rule may match, by destination.

    The kernel tests the port and the address separately: a clause constraining both is let
    through on its port alone (wider, never narrower).
    """

    clauses: Clauses

    @property
    def is_everything(self) -> bool:
        return any(c.port is None and c.net is None and not c.piped for c in self.clauses)

    @property
    def piped(self) -> bool:
        """Connects of processes whose stdin and stdout are pipes pass, wherever they go."""
        return any(c.piped for c in self.clauses)

    def ports(self) -> set[int]:
        return {c.port for c in self.clauses if c.port is not None}

    def nets(self) -> set[Net]:
        return {c.net for c in self.clauses if c.port is None and c.net is not None}

    def passes(self, family: int, address: str, port: int, *, piped: bool = False) -> bool:
        """Whether the kernel emits a connect to address:port of socket family `family`, made
        by a process whose stdin and stdout are pipes when `piped`."""
        net = as_net(address) if family in (2, 10) else None
        if net is None or self.is_everything or (piped and self.piped):
            return True
        return port in self.ports() or any(net.subnet_of(n) for n in self.nets())

    def describe(self) -> str:
        if self.is_everything:
            return "every connect"
        ports, nets = self.ports(), self.nets()
        parts = [f"{len(ports)} ports"] if ports else []
        parts += [f"{len(nets)} networks"] if nets else []
        parts += ["processes with piped stdio"] if self.piped else []
        return "connects to " + ", ".join(parts) if parts else "no connects"


@dataclass(frozen=True, slots=True)
class AcceptFilter:
    """The accepts some rule may match: all of them, or only those of a process whose stdin
    and stdout are pipes or that opened a FIFO by path (a relay between a shell and the
    network: a bind shell through a FIFO, `nc -l -p 4444 < f | sh > f`). Nothing else of an
    accept is judged in the kernel."""

    clauses: Clauses

    @property
    def piped_only(self) -> bool:
        return bool(self.clauses) and all(c.piped for c in self.clauses)

    def passes(self, *, piped: bool) -> bool:
        return piped or not self.piped_only

    def describe(self) -> str:
        if not self.clauses:
            return "no accepts"
        return "accepts of processes with piped stdio" if self.piped_only else "every accept"


@dataclass(frozen=True, slots=True)
class DupFilter:
    """The dups onto fds 0-2 some rule may match: all of them, only those of a socket, or only
    those of a socket that is not the server's end of a connection (accepted)."""

    clauses: Clauses

    @property
    def sockets_only(self) -> bool:
        return all(c.socket or c.outbound for c in self.clauses)

    @property
    def outbound_only(self) -> bool:
        return all(c.outbound for c in self.clauses)

    def passes(self, oldfd_is_socket: bool, accepted: bool = False) -> bool:
        if self.outbound_only:
            return oldfd_is_socket and not accepted
        return oldfd_is_socket or not self.sockets_only

    def describe(self) -> str:
        if self.outbound_only:
            return "dups of sockets not accepted onto fds 0-2"
        return "dups of sockets onto fds 0-2" if self.sockets_only else "every dup onto fds 0-2"


def domain_bit(domain: int) -> int:
    """A socket's address family as its bit in a domains mask (the kernel's, probes/filters.h)."""
    return 1 << min(domain & 0xFFFFFFFF, DOMAIN_BITS - 1)


@dataclass(frozen=True, slots=True)
class SocketFilter:
    """The new sockets some rule may match: by address family always, or only when socket()
    returned fd 0, 1 or 2 (a reverse shell that closed its stdio first)."""

    clauses: Clauses

    @property
    def is_everything(self) -> bool:
        return self.always == ANY_DOMAIN

    @property
    def always(self) -> int:
        """The families whose every new socket passes (a mask of domain_bit)."""
        return _domains(c for c in self.clauses if not c.stdio)

    @property
    def on_stdio(self) -> int:
        """The families whose new sockets pass when they landed on fd 0-2."""
        return _domains(c for c in self.clauses if c.stdio)

    def passes(self, domain: int, fd: int) -> bool:
        bit = domain_bit(domain)
        return bool(self.always & bit) or (0 <= fd <= 2 and bool(self.on_stdio & bit))

    def describe(self) -> str:
        if self.is_everything:
            return "every socket"
        always, on_stdio = _family_names(self.always), _family_names(self.on_stdio)
        parts = ([f"sockets of {always}"] if always else []) + (
            [f"sockets of {on_stdio} on fds 0-2"] if on_stdio else [])
        return "; ".join(parts) or "no socket"


def _domains(clauses: Iterable[Clause]) -> int:
    mask = 0
    for clause in clauses:
        mask |= clause.domains
    return mask


def _family_names(mask: int) -> str:
    return ", ".join(("family >= 63" if bit == DOMAIN_BITS - 1 else
                      enum_names(bit, SOCKET_FAMILIES))
                     for bit in range(DOMAIN_BITS) if mask >> bit & 1)


@dataclass(frozen=True, slots=True)
class KernelFilters:
    """The filters a rule set hands the kernel, loaded and replaced together."""

    opens: OpenFilter
    connects: ConnectFilter
    dups: DupFilter
    sockets: SocketFilter
    accepts: AcceptFilter

    def describe(self) -> dict[str, str]:
        return {"open": self.opens.describe(), "connect": self.connects.describe(),
                "dup": self.dups.describe(), "socket": self.sockets.describe(),
                "accept": self.accepts.describe()}


# --- deriving clauses from a condition ---------------------------------------------------------


class ClauseDeriver:
    """A condition's clauses for one family of syscalls (`types`: OPEN_TYPES, CONNECT_TYPES,
    DUP_TYPES, SOCKET_TYPES, ACCEPT_TYPES, or EXEC_TYPES for the engine's index); `macros` and
    `lists` are the compiler's."""

    def __init__(self, types: frozenset[str], macros: Mapping[str, object],
                 lists: Mapping[str, list[str]]) -> None:
        self._types = types
        self._leaves = {OPEN_TYPES: _OPEN_LEAVES, CONNECT_TYPES: _CONNECT_LEAVES,
                        DUP_TYPES: _DUP_LEAVES, SOCKET_TYPES: _SOCKET_LEAVES,
                        ACCEPT_TYPES: _ACCEPT_LEAVES, EXEC_TYPES: _EXEC_LEAVES}[types]
        self._opens = types == OPEN_TYPES
        self._absent = _ABSENT_ON_OPENS if self._opens else frozenset()
        self._macros = macros
        self._lists = lists

    def clauses(self, node: Node, seen: frozenset[str] = frozenset()) -> Clauses:
        if isinstance(node, Check):
            return self._check(node)
        if isinstance(node, MacroRef):
            ast = getattr(self._macros.get(node.name), "ast", None)
            if ast is None or node.name in seen:
                return ANYTHING
            return self.clauses(ast, seen | {node.name})
        if isinstance(node, Not):
            return ANYTHING
        parts = [self.clauses(item, seen) for item in node.items]
        if isinstance(node, Or):
            return union(parts)
        assert isinstance(node, And)
        result = ANYTHING
        for part in parts:
            result = _intersect(result, part)
        return result

    def _check(self, check: Check) -> Clauses:
        if check.transforms or check.other is not None:
            return ANYTHING  # tolower(fd.name) = ..., fd.name = val(...): not a path we can key
        values = [item for v in check.values for item in self._lists.get(v.text, [v.text])]
        name = _SAME_AS_FD_NAME.get(check.name, check.name)
        if name == "evt.type" and check.op in ("=", "in", "intersects"):
            return ANYTHING if self._types & set(values) else NOTHING
        if name in self._absent:
            return NOTHING  # a missing field matches nothing, whatever the operator
        if name in ("evt.is_open_read", "evt.is_open_write") and self._opens:
            if check.op == "=" and [v.lower() for v in values] == ["true"]:
                return frozenset({Clause(modes=READ if name.endswith("read") else WRITE)})
            return ANYTHING
        if name in _RESULT_FIELDS and self._opens:
            return frozenset({Clause(results=_results(check.op, values, name))})
        if name == "evt.is_open_setid" and self._opens:
            true = check.op == "=" and [v.lower() for v in values] == ["true"]
            return frozenset({Clause(setid=True)}) if true else ANYTHING
        make = self._leaves.get((name, check.op))
        if make is not None and check.op == "exists":
            return frozenset({make("")})  # a fact with no value to compare (piped stdio)
        if make is None or not values:
            return ANYTHING
        return _simplify(frozenset(make(v) for v in values))


# Facts of a flow_new that rule out a new inbound flow to a port its container already
# serves: an egress flow, or the first flow to a port (net.port_first_seen).
_NOT_SERVED_INBOUND = frozenset((("net.direction", "egress"), ("net.port_first_seen", "true")))


def excludes_served_inbound(node: Node, macros: Mapping[str, object],
                            lists: Mapping[str, list[str]],
                            seen: frozenset[str] = frozenset()) -> bool:
    """Whether no event `node` matches is a new inbound flow to a port already served (every
    one is an egress flow or a port's first); widens like the clauses: what it cannot reason
    about (negations, other fields) counts as matching such flows."""
    if isinstance(node, Check):
        if node.transforms or node.other is not None or node.op != "=":
            return False
        values = [item for v in node.values for item in lists.get(v.text, [v.text])]
        return len(values) == 1 and (node.name, values[0].lower()) in _NOT_SERVED_INBOUND
    if isinstance(node, MacroRef):
        ast = getattr(macros.get(node.name), "ast", None)
        return (ast is not None and node.name not in seen
                and excludes_served_inbound(ast, macros, lists, seen | {node.name}))
    if isinstance(node, Not):
        return False
    parts = [excludes_served_inbound(item, macros, lists, seen) for item in node.items]
    return any(parts) if isinstance(node, And) else all(parts)


def directions(node: Node, macros: Mapping[str, object], lists: Mapping[str, list[str]],
               seen: frozenset[str] = frozenset()) -> frozenset[str] | None:
    """The net.direction values an event `node` matches can have (rules.index.DirectionIndex);
    None when any: widens like the clauses (negations, `!=`, other operators and what it
    cannot resolve leave the direction open)."""
    if isinstance(node, Check):
        if node.name != "net.direction" or node.transforms or node.other is not None \
                or node.op not in ("=", "in"):
            return None
        return frozenset(item.lower() for v in node.values
                         for item in lists.get(v.text, [v.text]))
    if isinstance(node, MacroRef):
        ast = getattr(macros.get(node.name), "ast", None)
        if ast is None or node.name in seen:
            return None
        return directions(ast, macros, lists, seen | {node.name})
    if isinstance(node, Not):
        return None
    parts = [directions(item, macros, lists, seen) for item in node.items]
    if isinstance(node, And):
        known = [p for p in parts if p is not None]
        return frozenset.intersection(*known) if known else None
    if any(p is None for p in parts):
        return None
    return frozenset().union(*(p for p in parts if p is not None))


ENV_FIELD = "proc.env"
_ENV_VARIABLE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=")


def env_names(node: Node, macros: Mapping[str, object], lists: Mapping[str, list[str]],
              seen: frozenset[str] = frozenset()) -> frozenset[str] | None:
    """The environment variables `node` reads through proc.env, by name (for the kernel's walk
    of an environment too large for the record, probes/process.c): NAME of proc.env[NAME], and
    of `proc.env contains "NAME=..."`. None when it reads the environment in a way no list of
    names covers (`proc.env contains "secret"`, `proc.env startswith ...`, a transform or a
    field compared against), or a macro it names is unknown."""
    if isinstance(node, Check):
        if node.field.name != ENV_FIELD:
            return frozenset()
        if node.arg is not None:
            return frozenset({node.arg})
        if node.transforms or node.other is not None or node.op != "contains":
            return None
        values = [item for v in node.values for item in lists.get(v.text, [v.text])]
        found = [_ENV_VARIABLE.match(value) for value in values]
        if not all(found):
            return None
        return frozenset(match.group(1) for match in found if match)
    if isinstance(node, MacroRef):
        ast = getattr(macros.get(node.name), "ast", None)
        if ast is None:
            return None
        return frozenset() if node.name in seen else env_names(ast, macros, lists,
                                                                seen | {node.name})
    parts = [env_names(item, macros, lists, seen)
             for item in ((node.expr,) if isinstance(node, Not) else node.items)]
    if any(part is None for part in parts):
        return None
    return frozenset().union(*(part for part in parts if part is not None))


def _exact(path: str) -> Clause:
    if not path.startswith("/") or len(path.encode()) >= PATH_MAX_KEY:
        return Clause()
    return Clause(path=PathPattern("exact", path))


def _prefix(path: str) -> Clause:
    if not path.startswith("/") or len(path.encode()) > PATH_MAX_KEY:
        return Clause()
    return Clause(path=PathPattern("prefix", path))


def _prefix_of_glob(pattern: str) -> Clause:
    cut = min((pattern.index(c) for c in _GLOB_CHARS if c in pattern), default=len(pattern))
    return _exact(pattern) if cut == len(pattern) else _prefix(pattern[:cut])


def _name(name: str) -> Clause:
    if not name or "/" in name or len(name.encode()) > NAME_MAX_KEY:
        return Clause()
    return Clause(path=PathPattern("name", name))


def _directory(directory: str) -> Clause:
    return _prefix(directory.rstrip("/") + "/")


def _port(text: str) -> Clause:
    try:
        port = int(text, 0)
    except ValueError:
        return Clause()
    return Clause(port=port) if 0 <= port <= 0xFFFF else Clause()


def _net(text: str) -> Clause:
    return Clause(net=as_net(text))


def _socket(text: str) -> Clause:
    return Clause(socket=text.lower() in ("1", "true"))


def _setid(text: str) -> Clause:
    return Clause(setid=True) if text in SETID_MODES else Clause()


def _piped(_text: str) -> Clause:
    return Clause(piped=True)


def _fifo(kind: str) -> Clause:
    """fd.type "pipe" (fd.typechar "p") of an open: it opened a FIFO."""
    return Clause(fifo=True) if kind in ("pipe", "p") else Clause()


_RESULT_FIELDS = frozenset(("evt.rawres", "fd.num", "evt.res", "evt.failed"))


def _results(op: str, values: list[str], name: str) -> int:
    """Which results (SUCCESS, FAILURE) a check on an open's result allows; ANY_RESULT when it
    cannot tell. fd.num of an open is its result."""
    if name == "evt.failed":
        if op == "=" and len(values) == 1 and values[0].lower() in ("true", "false"):
            return FAILURE if values[0].lower() == "true" else SUCCESS
        return ANY_RESULT
    if name == "evt.res":
        if op in ("=", "in"):
            return sum_results(SUCCESS if v == "SUCCESS" else FAILURE for v in values)
        return ANY_RESULT
    try:
        numbers = [int(v, 0) for v in values]
    except ValueError:
        return ANY_RESULT
    if op in ("=", "in"):
        return sum_results(SUCCESS if n >= 0 else FAILURE for n in numbers)
    if len(numbers) != 1:
        return ANY_RESULT
    n = numbers[0]
    allowed = {">=": n >= 0, ">": n >= -1}
    if op in allowed:
        return SUCCESS if allowed[op] else ANY_RESULT
    below = {"<": n <= 0, "<=": n < 0}
    if op in below:
        return FAILURE if below[op] else ANY_RESULT
    return ANY_RESULT


def sum_results(results: Iterable[int]) -> int:
    total = 0
    for result in results:
        total |= result
    return total or ANY_RESULT


_ARG_FIELDS = ("evt.arg", "evt.rawarg")
_SAME_AS_FD_NAME = {f"{field}.{arg}": "fd.name" for field in _ARG_FIELDS
                    for arg in ("name", "path", "pathname", "oldpath")}
_ABSENT_ON_OPENS = frozenset(f"{field}.{arg}" for field in _ARG_FIELDS
                             for arg in ("newpath", "linkpath", "target"))
_OPEN_LEAVES: dict[tuple[str, str], Callable[[str], Clause]] = {
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
    **{(f"{field}.mode", "contains"): _setid for field in _ARG_FIELDS},
    **{(field, op): _fifo for field in ("fd.type", "fd.typechar") for op in ("=", "in")},
}
# On a connect or sendto the peer is the server and the remote end, and the only end the probe
# sees: fd.dip, fd.sip, fd.rip, fd.snet, fd.rnet, fd.ip and fd.net are its address, fd.dport,
# fd.sport, fd.rport and fd.port its port.
_PEER_PORTS = ("fd.dport", "fd.sport", "fd.rport", "fd.port")
_PEER_NETS = ("fd.dip", "fd.sip", "fd.rip", "fd.snet", "fd.rnet", "fd.ip", "fd.net")
_WIRED_LEAVES: dict[tuple[str, str], Callable[[str], Clause]] = {
    (WIRED_FIELD, op): _piped for op in ("=", "in", "intersects", "exists", "contains")}
_CONNECT_LEAVES: dict[tuple[str, str], Callable[[str], Clause]] = {
    **{(name, op): _port for name in _PEER_PORTS for op in ("=", "in")},
    **{(name, op): _net for name in _PEER_NETS for op in ("=", "in")},
    **_WIRED_LEAVES,
}
_ACCEPT_LEAVES = _WIRED_LEAVES


def _socket_kind(kind: str) -> Clause:
    return Clause(socket=kind in SOCKET_KINDS)


def _outbound(text: str) -> Clause:
    return Clause(socket=True, outbound=True) if text.lower() in ("false", "0") else Clause()


SOCKET_KINDS = frozenset(("ipv4", "ipv6", "unix", "netlink"))
_DUP_LEAVES: dict[tuple[str, str], Callable[[str], Clause]] = {
    **{(f"{field}.oldfd_is_socket", "="): _socket for field in _ARG_FIELDS},
    ("fd.type", "="): _socket_kind,
    ("fd.type", "in"): _socket_kind,
    ("fd.is_server", "="): _outbound,
}


def _families(rendered: Callable[[str], bool]) -> Clause:
    """The families whose rendering as evt.arg.domain (their names, "AF_LOCAL|AF_UNIX") the
    test accepts; unconstrained when none does (not a name we know)."""
    mask = 0
    for family in range(DOMAIN_BITS - 1):
        if rendered(enum_names(family, SOCKET_FAMILIES)):
            mask |= domain_bit(family)
    return Clause(domains=mask) if mask else Clause()


def _domain(text: str) -> Clause:
    """evt.arg.domain = 17, or = AF_PACKET (one of the number's names)."""
    try:
        return Clause(domains=domain_bit(int(text, 0)))
    except ValueError:
        return _families(lambda names: text in names.split("|"))


def _domain_containing(text: str) -> Clause:
    """evt.arg.domain contains AF_INET (a number's rendering is itself: digits may be part of
    any family's, so they constrain nothing)."""
    if not text or text.isdigit():
        return Clause()
    return _families(lambda names: text in names)


def _stdio_result(text: str) -> Clause:
    """socket()'s result compared with 0, 1 or 2; any other number is not a facet we key."""
    try:
        return Clause(stdio=True) if int(text, 0) in (0, 1, 2) else Clause()
    except ValueError:
        return Clause()


_SOCKET_LEAVES: dict[tuple[str, str], Callable[[str], Clause]] = {
    **{(f"{field}.domain", op): _domain for field in _ARG_FIELDS for op in ("=", "in")},
    ("evt.arg.domain", "contains"): _domain_containing,
    **{(name, op): _stdio_result for name in ("evt.rawres", "fd.num") for op in ("=", "in")},
}


def _proc_name(name: str) -> Clause:
    return Clause(name=name)


# An exec's proc.name, compared whole: what most rules about execs name (network tools,
# package managers, shells). Only the engine's index uses these (rules.index).
_EXEC_LEAVES: dict[tuple[str, str], Callable[[str], Clause]] = {
    ("proc.name", "="): _proc_name,
    ("proc.name", "in"): _proc_name,
}


# --- the algebra --------------------------------------------------------------------------------


def _meet_paths(a: PathPattern, b: PathPattern) -> PathPattern | None:
    """A pattern covering what both match (wider when not expressible); None for nothing."""
    if a.kind > b.kind:
        a, b = b, a
    # kinds are now ordered: exact < name < prefix
    if a.kind == b.kind == "prefix":
        longer, shorter = (a, b) if len(a.text) >= len(b.text) else (b, a)
        return longer if longer.text.startswith(shorter.text) else None
    if a.kind == b.kind:  # two exact paths, or two names
        return a if a.text == b.text else None
    if a.kind == "exact":
        return a if b.matches(a.text) else None
    return a  # a name within a prefix: keep the name, wider than both together


def _meet(a: Clause, b: Clause) -> Clause | None:
    """A clause covering every syscall both match (exactly, or wider when not expressible)."""
    modes = a.modes & b.modes
    if not modes:
        return None
    path = a.path or b.path
    if a.path is not None and b.path is not None:
        path = _meet_paths(a.path, b.path)
        if path is None:
            return None
    if a.port is not None and b.port is not None and a.port != b.port:
        return None
    if a.name is not None and b.name is not None and a.name != b.name:
        return None
    net = a.net or b.net
    if a.net is not None and b.net is not None:
        if a.net.subnet_of(b.net):
            net = a.net
        elif b.net.subnet_of(a.net):
            net = b.net
        else:
            return None
    results = a.results & b.results
    if not results:
        return None
    domains = a.domains & b.domains
    if not domains:
        return None
    return Clause(path=path, modes=modes, results=results, setid=a.setid or b.setid,
                  fifo=a.fifo or b.fifo,
                  port=a.port if a.port is not None else b.port, net=net,
                  piped=a.piped or b.piped, socket=a.socket or b.socket,
                  outbound=a.outbound or b.outbound, domains=domains,
                  stdio=a.stdio or b.stdio, name=a.name or b.name)


def _intersect(left: Clauses, right: Clauses) -> Clauses:
    if left == ANYTHING:
        return right
    if right == ANYTHING:
        return left
    if len(left) * len(right) > MAX_CLAUSES:
        return left if len(left) <= len(right) else right
    met = (_meet(a, b) for a, b in itertools.product(left, right))
    return _simplify(frozenset(c for c in met if c is not None))


def _simplify(clauses: Iterable[Clause]) -> Clauses:
    """Drop what an unconstrained clause already covers."""
    clauses = frozenset(clauses)
    if Clause() in clauses:
        return ANYTHING
    free_modes = 0  # modes for which some clause constrains nothing else
    for clause in clauses:
        if clause == Clause(modes=clause.modes):
            free_modes |= clause.modes
    if not free_modes:
        return clauses
    kept = {replace(c, modes=c.modes & ~free_modes) for c in clauses
            if c != Clause(modes=c.modes) and c.modes & ~free_modes}
    return frozenset({Clause(modes=free_modes), *kept})


def union(filters: Iterable[Clauses]) -> Clauses:
    return _simplify(frozenset().union(*filters))
