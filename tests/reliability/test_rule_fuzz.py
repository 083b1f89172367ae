"""A grammar fuzzer for rule files: 10,000 generated files, each either a rule set or a RuleError.

Files are generated from the rule file grammar (TOML [lists], [macros], [[rules]] with
conditions in Falco's language, outputs, priorities, exceptions, overrides, thresholds,
suppress_by) and then bent: unknown fields, wrong types, unbalanced parentheses, bad quotes,
huge numbers, deep nesting, macro cycles, broken regexes and CIDRs, corrupted TOML. Loading
must end in a RuleSet or a RuleError/RuleSetError (file:line, never another exception), and a
loaded set must match synthetic events without an exception escaping the engine, and the open
and exec indexes (cauditd.rules.index) must offer every rule that matches an open or an exec.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from cauditd.rules import FIELDS, RuleEngine, RuleError, RuleSetError, load_ruleset
from cauditd.rules.fields import FieldType
from cauditd.rules.parser import BINARY_OPS, LIST_OPS, UNARY_OPS
from tests.rules.synth import connect, dns, execve, flow, open_read, open_write, syscall
from tests.rules.test_index import matching

CASES = 10_000
SEED = 20261201
FIELD_NAMES = sorted(FIELDS)
BOGUS_FIELDS = ["proc.nope", "evt.arg.", "fd.name[1]", "proc.aname[x]", "proc.aname[99999999999]",
                "evt.arg.path", "container.label.a.b", "x", "proc..name", "ŝ.û"]
BOGUS_OPS = ["===", "~=", "matches", "in in", "", "<>", "glob glob"]
STRINGS = ["/etc/shadow", "", "sh", "a b", "(", ")", ",", "\\", "\"", "'", "%", "ünï", "\x00x",
           "10.0.0.0/8", "::1/128", "10.0.0.0/33", "256.1.1.1", "*", "**/x", "[", "[!a]",
           "(a+)+$", "re:(", "x" * 5000, "@everyone", "<!channel>", "\u202e"]
NUMBERS = ["0", "-1", "1", "65535", "65536", "99999999999999999999999999999", "1e9", "0x10",
           "-0", "3.5"]
PRIORITIES = ["emergency", "Alert", "CRITICAL", "error", "warning", "notice", "info",
              "informational", "debug", "bogus", "", 5]
SOURCES = ["syscall", "network", "k8s_audit", "", 1]


TYPED_VALUES: dict[FieldType, list[str]] = {
    FieldType.STRING: ['"/etc/shadow"', "sh", '"/tmp/"', "'*.key'", '"a b"', "/dev/shm",
                       '"^sh$"', '""', "evil.example"],
    FieldType.INT: ["0", "1", "443", "-1", "65535"],
    FieldType.FLOAT: ["0", "3.5", "10"],
    FieldType.DYN: ["16", "PTRACE_ATTACH", "0"],
    FieldType.BOOL: ["true", "false", "1", "0"],
    FieldType.IPADDR: ["10.0.0.1", "10.0.0.0/8", "::1", "169.254.169.254/32"],
    FieldType.IPLIST: ["10.0.0.1", "192.168.0.0/16"],
    FieldType.LIST: ["sh", '"/etc/shadow"', "evil.example"],
    FieldType.INTLIST: ["0", "443", "65535"],
}
TYPED_OPS: dict[FieldType, tuple[str, ...]] = {
    FieldType.STRING: ("=", "!=", "contains", "icontains", "startswith", "endswith", "glob",
                       "regex", "in", "pmatch"),
    FieldType.INT: ("=", "!=", "<", "<=", ">", ">=", "in"),
    FieldType.FLOAT: ("=", "<", ">="),
    FieldType.DYN: ("=", "!=", "in"),
    FieldType.BOOL: ("=", "!="),
    FieldType.IPADDR: ("=", "!=", "in"),
    FieldType.IPLIST: ("intersects", "contains", "in"),
    FieldType.LIST: ("intersects", "contains", "in"),
    FieldType.INTLIST: ("intersects", "contains", "in"),
}


class Grammar:
    """Random pieces of rule files, mostly well-typed; `bend` makes a piece wrong in one of many
    ways, and a share of the pieces are wrong from the start (any field, op and value)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.macros: list[str] = []
        self.lists: list[str] = []

    def value(self, depth: int = 0) -> str:
        r = self.rng
        pick = r.random()
        if pick < 0.35 or depth > 2:
            text = r.choice(STRINGS)
            return json.dumps(text) if r.random() < 0.5 else text.replace(" ", "")
        if pick < 0.6:
            return r.choice(NUMBERS)
        if pick < 0.75 and self.lists:
            return r.choice(self.lists)
        items = ", ".join(self.value(depth + 1) for _ in range(r.randint(0, 4)))
        return f"({items})"

    def field(self) -> str:
        if self.rng.random() < 0.05:
            return self.rng.choice(BOGUS_FIELDS)
        return self._spelled(self.rng.choice(FIELD_NAMES))

    def _spelled(self, name: str) -> str:
        arg = FIELDS[name].arg
        if arg == "index":
            return f"{name}[{self.rng.randint(0, 4)}]"
        if arg == "name":
            return f"{name}.{self.rng.choice(['path', 'request', 'flags', 'fd'])}"
        if arg == "key":
            return f"{name}[{self.rng.choice(['app', '/data', 'PATH', 'a b', ''])}]"
        return name

    def typed(self) -> str:
        """A check whose operator and value fit the field's type."""
        r = self.rng
        name = r.choice(FIELD_NAMES)
        kind = FIELDS[name].type  # a type added later is fuzzed with strings
        op = r.choice(TYPED_OPS.get(kind, TYPED_OPS[FieldType.STRING]))
        values = TYPED_VALUES.get(kind, TYPED_VALUES[FieldType.STRING])
        if op in ("in", "intersects", "pmatch"):
            operand = "(" + ", ".join(r.sample(values, r.randint(1, min(3, len(values))))) + ")"
            if self.lists and r.random() < 0.3:
                operand = f"({r.choice(self.lists)})"
        else:
            operand = r.choice(values)
        return f"{self._spelled(name)} {op} {operand}"

    def comparison(self) -> str:
        r = self.rng
        pick = r.random()
        if pick < 0.86:
            return self.typed()
        if pick < 0.93 and self.macros:
            return r.choice(self.macros)
        if pick < 0.95:
            return f"{self.field()} {r.choice(BOGUS_OPS)} {self.value()}"
        if pick < 0.96:
            return f"{self.field()} {r.choice(UNARY_OPS)}"
        if pick < 0.98:
            return f"{self.field()} {r.choice(LIST_OPS)} {self.value()}"
        return f"{self.field()} {r.choice(BINARY_OPS)} {self.value()}"

    def condition(self, depth: int = 0) -> str:
        r = self.rng
        if depth > 4 or r.random() < 0.35:
            return self.comparison()
        pick = r.random()
        if pick < 0.4:
            joiner = r.choice([" and ", " or ", " and not ", " or not "])
            return joiner.join(self.condition(depth + 1) for _ in range(r.randint(2, 3)))
        if pick < 0.6:
            return f"not {self.condition(depth + 1)}"
        return f"({self.condition(depth + 1)})"

    def bend(self, condition: str) -> str:
        """One way of making a condition wrong (or strange but valid)."""
        r = self.rng
        ways = [
            lambda c: c + ")",
            lambda c: "(" + c,
            lambda c: c[: r.randint(0, len(c))],
            lambda c: c.replace(" ", "", 1),
            lambda c: c + " and",
            lambda c: "and " + c,
            lambda c: c.replace("(", "", 1),
            lambda c: c + ' "unterminated',
            lambda c: "(" * 400 + c + ")" * 400,
            lambda c: "not " * 3000 + c,
            lambda c: "(" * 99 + c + ")" * 99,
            lambda c: " and ".join([c] * 50),
            lambda c: c.replace("=", "= =", 1),
            lambda c: c + " " + r.choice(STRINGS),
            lambda c: "",
        ]
        return r.choice(ways)(condition)

    def output(self) -> str:
        r = self.rng
        parts = [r.choice(["hit"] * 8 + ["%", "%%", "%proc.nope", "%evt.arg.", "(%fd.name)"])]
        parts += [f"%{self.field()}" for _ in range(r.randint(0, 4))]
        return " ".join(parts)


def toml_value(value: object) -> str:
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    return json.dumps(str(value))


def rule_file(rng: random.Random) -> str:
    """One generated rule file."""
    grammar = Grammar(rng)
    lines: list[str] = []
    if rng.random() < 0.4:
        lines.append("[lists]")
        for i in range(rng.randint(1, 3)):
            name = f"list_{i}"
            items = [rng.choice(STRINGS) for _ in range(rng.randint(0, 4))]
            if grammar.lists and rng.random() < 0.3:
                items.append(rng.choice(grammar.lists))  # a list including a list
            lines.append(f"{name} = {toml_value(items)}")
            grammar.lists.append(name)
    if rng.random() < 0.4:
        lines.append("[macros]")
        for i in range(rng.randint(1, 3)):
            name = f"macro_{i}"
            if rng.random() < 0.2:
                grammar.macros.append(f"macro_{rng.randint(0, 3)}")  # maybe a cycle
            lines.append(f"{name} = {toml_value(grammar.condition())}")
            grammar.macros.append(name)
    for n in range(rng.randint(1, 3)):
        lines += ["", "[[rules]]"] + [f"{k} = {toml_value(v)}" for k, v in rule(grammar, n).items()]
    text = "\n".join(lines) + "\n"
    if rng.random() < 0.05:  # corrupted TOML
        cut = rng.randint(0, len(text))
        junk = rng.choice(["[", "\"", "=", "\x00", "]]", "\n[[rules", "é"])
        text = text[:cut] + junk + text[cut:]
    return text


def rule(grammar: Grammar, n: int) -> dict[str, object]:
    rng = grammar.rng
    condition = grammar.condition()
    if rng.random() < 0.15:
        condition = grammar.bend(condition)
    values: dict[str, object] = {
        "name": rng.choice([f"rule {n}"] * 6 + ["dup", "", f"rule {n} \u202e"]),
        "condition": condition,
        "output": grammar.output(),
        "priority": rng.choice(PRIORITIES[:9] * 3 + PRIORITIES[9:]),
    }
    good = rng.random() < 0.8  # most optional keys well formed, some bent
    optional: dict[str, object] = {
        "desc": "d" if good else rng.choice([1, ["x"]]),
        "tags": ["a", "b"] if good else rng.choice(["a", [1]]),
        "enabled": rng.choice([True, False]) if good else "yes",
        "source": rng.choice(SOURCES[:2] if good else SOURCES),
        "suppress_by": [grammar.field()] if good else rng.choice([grammar.field(), [1]]),
        "threshold": {
            "count": rng.choice([1, 5] if good else [0, -3, 10**20, "5"]),
            "within": rng.choice(["10s", "500ms", "5m"] if good else ["0s", "abc", -1, ""]),
            **({"by": [grammar.field()]} if rng.random() < 0.5 else {}),
            **({"distinct": grammar.field()} if rng.random() < 0.3 else {}),
            **({"sum": grammar.field()} if rng.random() < 0.2 else {}),
            **({"max_keys": rng.choice([100] if good else [0, -1, "x"])}
               if rng.random() < 0.2 else {}),
        },
        "exceptions": [{
            "name": "e" if good else rng.choice(["", 1]),
            "fields": rng.choice([[grammar.field()], [grammar.field()] * 2, []]),
            "comps": rng.choice([["="], ["in"], ["bogus"], ["=", "="]]),
            "values": rng.choice([[["sh"]], [["a", "b"]], "x", [[1]], [[["deep"]]]]),
        }],
        "override": rng.choice([{"condition": "append"}, {"output": "replace"}] if good
                               else [{"condition": "bogus"}, "append", {"nope": "append"}]),
        **({} if good else {"bogus_key": 1}),
    }
    for key, value in optional.items():
        if rng.random() < 0.12:
            values[key] = value
    return values


EVENTS = [open_read("/etc/shadow"), open_write("/etc/x"), execve("/bin/sh", "sh", "-c", "id"),
          connect("10.0.0.7", 3333), syscall("ptrace", {"request": 16}), flow("1.2.3.4", 443),
          dns("evil.example")]


INDEXED = [open_read("/etc/shadow"), open_write("/etc/x"), open_read("/proc/1/environ"),
           open_read("/tmp/x", ret=-2), open_write("/dev/sda", mode=0o4755),
           execve("/bin/sh", "sh", "-c", "id"), execve("/usr/bin/curl", "curl", "evil.example")]


def test_every_generated_rule_file_is_a_rule_set_or_a_rule_error(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    outcomes = {"loaded": 0, "refused": 0}
    path = tmp_path / "fuzz.toml"
    for case in range(CASES):
        text = rule_file(rng)
        path.write_text(text, errors="surrogatepass")
        try:
            ruleset = load_ruleset([path])
        except (RuleError, RuleSetError) as exc:
            errors = exc.errors if isinstance(exc, RuleSetError) else [exc]
            assert all(isinstance(e, RuleError) and str(e) for e in errors), (case, text)
            outcomes["refused"] += 1
            continue
        except Exception as exc:
            raise AssertionError(f"case {case}: {type(exc).__name__}: {exc}\n{text}") from exc
        outcomes["loaded"] += 1
        engine = RuleEngine(ruleset, suppress_window_s=0)
        for event in EVENTS:
            engine.match(event)  # a rule that raises is the engine's to count, never to escape
        for event in INDEXED:
            assert set(matching(ruleset, event)) <= set(ruleset.candidates(event)), (case, text)
    assert outcomes["loaded"] > CASES // 20 and outcomes["refused"] > CASES // 20, outcomes
