"""Parser, compiler and every operator, table-driven on synthetic events."""

from __future__ import annotations

import pytest

from cauditd.events import Event
from cauditd.rules.errors import (
    ConditionSyntaxError,
    RuleError,
    TypeMismatchError,
    UnknownFieldError,
    UnknownListError,
    UnknownMacroError,
)
from cauditd.rules.parser import And, Check, MacroRef, Not, Or, parse_condition
from tests.rules.helpers import predicate
from tests.rules.synth import (
    BASH,
    connect,
    dns,
    execve,
    flow,
    open_read,
    open_write,
    syscall,
)

EXEC = execve("/usr/bin/curl", "curl", "-s", "http://Example.com/x", parent=BASH)


@pytest.mark.parametrize(("text", "shape"), [
    ("proc.name = bash", "Check"),
    ("proc.name=bash", "Check"),
    ("proc.name == bash", "Check"),
    ("not proc.name = bash", "Not"),
    ("a and b or c", "Or"),
    ("a or b and c", "Or"),
    ("(a or b) and c", "And"),
    ("not(a)", "Not"),
    ("spawned_process", "MacroRef"),
    ("proc.aname[2] = sh", "Check"),
    ("evt.arg.request in (16, 0x4206)", "Check"),
    ("fd.name exists", "Check"),
    ("proc.name in shell_binaries", "Check"),
])
def test_parse_shapes(text: str, shape: str) -> None:
    ast = parse_condition(text).ast
    assert type(ast).__name__ == shape


def test_precedence_and_binds_tighter() -> None:
    ast = parse_condition("a or b and not c").ast
    assert isinstance(ast, Or)
    assert isinstance(ast.items[0], MacroRef)
    assert isinstance(ast.items[1], And)
    assert isinstance(ast.items[1].items[1], Not)


def test_values_keep_positions_and_quotes() -> None:
    ast = parse_condition('proc.cmdline contains "a \\"b\\" c" and fd.name in (/x, \'y z\')').ast
    assert isinstance(ast, And)
    first, second = ast.items
    assert isinstance(first, Check) and isinstance(second, Check)
    assert first.values[0].text == 'a "b" c' and first.values[0].quoted
    assert [v.text for v in second.values] == ["/x", "y z"]
    assert second.values[0].pos == len('proc.cmdline contains "a \\"b\\" c" and fd.name in (')


OPERATOR_CASES: list[tuple[str, Event, bool]] = [
    ("proc.name = curl", EXEC, True),
    ("proc.name = wget", EXEC, False),
    ("proc.name != wget", EXEC, True),
    ("proc.name != curl", EXEC, False),
    ("proc.pid < 5000", EXEC, True),
    ("proc.pid <= 4200", EXEC, True),
    ("proc.pid > 4200", EXEC, False),
    ("proc.pid >= 4200", EXEC, True),
    ("proc.pid = 0x1068", EXEC, True),
    ("proc.name in (wget, curl)", EXEC, True),
    ("proc.name in (wget, fetch)", EXEC, False),
    ("proc.name intersects (curl)", EXEC, True),
    ("proc.aname intersects (nginx, zsh)", EXEC, True),
    ("proc.aname in (nginx)", EXEC, True),
    ("proc.aname = containerd-shim", EXEC, True),  # the comm: 15 characters, as in Falco
    ("proc.aname = containerd-shim-runc-v2", EXEC, False),
    ("proc.aname = python", EXEC, False),
    ("proc.aname[1] = bash", EXEC, True),
    ("proc.aname[2] = nginx", EXEC, True),
    ("proc.aname[0] = curl", EXEC, True),
    ("proc.aname[9] = bash", EXEC, False),
    ("proc.cmdline contains Example.com", EXEC, True),
    ("proc.cmdline contains example.com", EXEC, False),
    ("proc.cmdline icontains EXAMPLE.COM", EXEC, True),
    ("proc.exepath startswith /usr/", EXEC, True),
    ("proc.exepath startswith /bin/", EXEC, False),
    ("proc.exepath endswith /curl", EXEC, True),
    ("proc.exepath glob /usr/*/cu?l", EXEC, True),
    ("proc.exepath glob /usr/*/wget", EXEC, False),
    ("proc.exepath pmatch (/usr/bin, /sbin)", EXEC, True),
    ("proc.exepath pmatch (/usr/b)", EXEC, False),
    ("proc.exepath pmatch (/usr/bin/curl)", EXEC, True),
    ("proc.cmdline regex 'https?://[a-zA-Z]+\\.com'", EXEC, True),
    ("proc.cmdline regex '^wget'", EXEC, False),
    ("proc.cwd exists", EXEC, False),
    ("proc.name exists", EXEC, True),
    ("fd.name exists", EXEC, False),
    ("fd.name = x", EXEC, False),
    ("not fd.name = x", EXEC, True),
    ("fd.name != x", EXEC, False),
    ("proc.tty = 0", EXEC, True),
    ("proc.is_exe_upper_layer = false", EXEC, True),
    ("proc.is_exe_upper_layer = true", EXEC, False),
    ("proc.is_exe_upper_layer = 0", EXEC, True),
    ("evt.type = execve and (proc.name = x or proc.pname = bash)", EXEC, True),
    ("evt.type = execve and not (proc.name = x or proc.pname = bash)", EXEC, False),
    ("fd.dip = 10.1.2.3", connect("10.1.2.3", 443), True),
    ("fd.dip = 10.0.0.0/8", connect("10.1.2.3", 443), True),
    ("fd.dip = 192.168.0.0/16", connect("10.1.2.3", 443), False),
    ("fd.dip in (192.168.0.0/16, 10.1.0.0/16)", connect("10.1.2.3", 443), True),
    ("fd.dip != 10.1.2.3", connect("10.1.2.3", 443), False),
    ("fd.dip = fd00::/8", connect("fd00::1", 443, family=10), True),
    # v4-mapped IPv6, in an event or in a rule, is the IPv4 address it carries
    ("fd.dip = 169.254.169.254", connect("::ffff:169.254.169.254", 80, family=10), True),
    ("fd.dip in (169.254.0.0/16)", connect("::ffff:169.254.169.254", 80, family=10), True),
    ("fd.dip = ::ffff:10.1.2.3", connect("10.1.2.3", 443), True),
    ("fd.dip = ::ffff:10.0.0.0/104", connect("10.1.2.3", 443), True),
    ('fd.net = "172.17.0.0/16"', flow("8.8.8.8", 53), True),
    ('fd.net = "10.0.0.0/8"', flow("8.8.8.8", 53), False),
    ("fd.sip exists", connect("10.1.2.3", 443), True),  # the server: connect's peer
    ("fd.cip exists", connect("10.1.2.3", 443), False),  # the local end is not captured
    ("fd.dport in (80, 443)", connect("10.1.2.3", 443), True),
    ("fd.dport > 1024", connect("10.1.2.3", 443), False),
    ("fd.l4proto = tcp", connect("10.1.2.3", 443), True),
    ("fd.name = 10.1.2.3:443", connect("10.1.2.3", 443), True),
    ("evt.arg.request = 16", syscall("ptrace", {"request": 16, "pid": 1}), True),
    ("evt.arg.request in (16, 0x4206)", syscall("ptrace", {"request": 0x4206}), True),
    ("evt.arg.request < 17", syscall("ptrace", {"request": 16}), True),
    ("evt.arg.request = x", syscall("ptrace", {"request": 16}), False),
    ("evt.arg.name = secret", syscall("memfd_create", {"name": "secret"}), True),
    ("evt.arg.missing exists", syscall("memfd_create", {"name": "x"}), False),
    ("evt.arg.flags contains O_TRUNC", open_write("/x", flags=0o1001), True),
    ("evt.arg.flags contains O_TRUNC", open_write("/x", flags=0o1), False),
    ("evt.rawarg.flags = 0o1001", open_write("/x", flags=0o1001), True),
    ("evt.is_open_write = true", open_write("/x"), True),
    ("evt.is_open_read = true", open_write("/x"), False),
    ("evt.is_open_read = true", open_read("/x"), True),
    ("evt.res = SUCCESS", open_read("/x"), True),
    ("evt.res = ENOENT", open_read("/x", ret=-2), True),
    ("dns.answers = 1.2.3.4", dns("a.com", answers=("5.6.7.8", "1.2.3.4")), True),
    ("dns.answers != 1.2.3.4", dns("a.com", answers=("5.6.7.8", "1.2.3.4")), False),
    ("dns.qname_suffixes intersects (b.com)", dns("x.a.b.com"), True),
    ("dns.qname_suffixes intersects (ab.com)", dns("x.a.b.com"), False),
    ("dns.qname_entropy > 3.5", dns("q8zk3v7mx2p9wj4t.com"), True),
    ("dns.qname_entropy > 3.5", dns("google.com"), False),
]


B64 = execve("/bin/echo", "echo", "aGVsbG8=", parent=BASH)
# Falco's transformers, val(), iglob and the byte operators
LANGUAGE_CASES: list[tuple[str, Event, bool]] = [
    ("tolower(proc.cmdline) contains example.com", EXEC, True),
    ("toupper(proc.name) = CURL", EXEC, True),
    ("toupper(proc.name) = curl", EXEC, False),
    ("basename(proc.exepath) = curl", EXEC, True),
    ("toupper(basename(proc.exepath)) = CURL", EXEC, True),
    ("len(proc.name) = 4", EXEC, True),
    ("len(proc.args) > 100", EXEC, False),
    ("len(proc.aname) >= 3", EXEC, True),
    ("toupper(proc.aname) intersects (BASH)", EXEC, True),
    ("b64(proc.args) = hello", B64, True),
    ("b64(proc.args) = hello", EXEC, False),  # not base64: no value
    ("not b64(proc.args) exists", EXEC, True),
    ("proc.name = val(proc.name)", EXEC, True),
    ("proc.name = val(proc.pname)", EXEC, False),
    ("proc.name != val(proc.pname)", EXEC, True),
    ("proc.cmdline contains val(proc.name)", EXEC, True),
    ("proc.exepath endswith val(proc.name)", EXEC, True),
    ("proc.pid > val(proc.ppid)", EXEC, True),
    ("toupper(proc.name) = toupper(proc.name)", EXEC, True),
    ("proc.name = val(fd.name)", EXEC, False),  # a missing side never matches
    ("proc.exepath iglob /USR/*/CURL", EXEC, True),
    ("proc.exepath glob /USR/*/CURL", EXEC, False),
    ("proc.cmdline bcontains 6375726c", EXEC, True),
    ("proc.name bstartswith 6375", EXEC, True),
    ("proc.name bstartswith 7A", EXEC, False),
]


@pytest.mark.parametrize(("condition", "event", "expected"), OPERATOR_CASES + LANGUAGE_CASES)
def test_operators(condition: str, event: Event, expected: bool) -> None:
    assert predicate(condition)(event) is expected


@pytest.mark.parametrize(("condition", "expected"), [
    ("proc.name in (shells)", True),
    ("proc.name in shells", True),
    ("proc.name in (nested)", True),
    ("proc.name in ('shells')", False),
    ("proc.name in (other, curl)", True),
])
def test_named_lists(condition: str, expected: bool) -> None:
    lists = {"shells": ["sh", "curl"], "nested": ["zsh", "curl"]}
    assert predicate(condition, lists)(EXEC) is expected


@pytest.mark.parametrize(("condition", "error", "message", "caret"), [
    ("proc.nme = bash", UnknownFieldError, "unknown field 'proc.nme'", "^^^^^^^^"),
    ("proc.name = bash and (evt.type = execve", ConditionSyntaxError,
     "unbalanced parenthesis: '(' is never closed", "                     ^"),
    ("proc.name = bash)", ConditionSyntaxError, "unbalanced parenthesis: ')'",
     "                ^"),
    ("proc.name in (a, b", ConditionSyntaxError, "list is never closed", "             ^"),
    ("proc.name =", ConditionSyntaxError, "missing value after '='", "          ^"),
    ("proc.name = bash and", ConditionSyntaxError, "condition ends", "                   ^"),
    ("proc.name = bash bash", ConditionSyntaxError, "expected 'and', 'or'",
     "                 ^^^^"),
    ("proc.pid = bash", TypeMismatchError, "'bash' is not an integer", "           ^^^^"),
    ("proc.pid contains 1", TypeMismatchError, "operator 'contains' does not apply to "
     "proc.pid", "^^^^^^^^"),
    ("proc.name contains a or proc.pid contains 1", TypeMismatchError,
     "operator 'contains' does not apply to proc.pid", " " * 24 + "^^^^^^^^"),
    ("proc.name > 3", TypeMismatchError, "operator '>' does not apply", "^^^^^^^^^"),
    ("fd.dip = nothere", TypeMismatchError, "is not an IP address or CIDR", "         ^^^^^^^"),
    ("proc.is_exe_upper_layer = maybe", TypeMismatchError, "is not a boolean", ""),
    ("evt.type = opne", TypeMismatchError, "unknown event type 'opne'", "           ^^^^"),
    ("proc.pid != (1, 2)", TypeMismatchError, "takes one value", ""),
    ("spawned and proc.name = x", UnknownMacroError, "unknown macro 'spawned'", "^^^^^^^"),
    ("proc.name in nolist", UnknownListError, "unknown list 'nolist'", "             ^^^^^^"),
    ("proc.name regex '('", ConditionSyntaxError, "bad regular expression", ""),
    ('proc.name = "abc', ConditionSyntaxError, "unterminated string", ""),
    ("", ConditionSyntaxError, "empty condition", ""),
    ("tolower(proc.pid) = 1", TypeMismatchError, "tolower() does not apply to proc.pid",
     "        ^^^^^^^^"),
    ("len(proc.name)", ConditionSyntaxError, "expected an operator after len(...)", ""),
    ("tolower(proc.name = x", ConditionSyntaxError, "tolower( is never closed", ""),
    ("proc.name bcontains xyz", TypeMismatchError, "is not hex bytes", ""),
    ("proc.name = val(proc.nme)", UnknownFieldError, "unknown field 'proc.nme'", ""),
    ("(" * 300 + "proc.name = x" + ")" * 300, ConditionSyntaxError, "nested more than 100 deep",
     ""),
    ("not " * 300 + "proc.name = x", ConditionSyntaxError, "nested more than 100 deep", ""),
])
def test_condition_errors(condition: str, error: type[RuleError], message: str,
                          caret: str) -> None:
    with pytest.raises(error) as info:
        predicate(condition)
    text = str(info.value)
    assert message in text
    if caret:
        assert text.splitlines()[-1] == "    " + caret, text
        assert text.splitlines()[-2] == "    " + condition


@pytest.mark.parametrize(("parts", "on_exec"), [
    (['proc.cmdline icontains "EXAMPLE"', 'proc.cmdline icontains "nothing"'], True),
    (['proc.cmdline contains "nothing"', "proc.name = wget", 'proc.cmdline contains "-q"'],
     False),
    (['proc.cmdline contains "Ex"', 'proc.cmdline icontains "zz"', 'proc.cmdline contains "zz"'],
     True),
    (["proc.exepath startswith /bin", "proc.exepath startswith /usr/"], True),
    (["proc.exepath endswith /wget", "proc.exepath endswith /nc"], False),
    (['tolower(proc.cmdline) contains "example"', 'tolower(proc.cmdline) contains "zz"'], True),
    (['proc.aname contains "zz"', 'proc.aname contains "bas"'], True),
    (["proc.name startswith (none, cu)", "proc.name startswith zz"], True),
    (["proc.name startswith (none)", "proc.name startswith zz", "fd.name startswith /etc"],
     False),
])
def test_an_or_of_one_fields_tests_is_the_or_of_each(parts: list[str], on_exec: bool) -> None:
    """Compiler.either makes `f contains a or f contains b` one test of f: it answers as the
    tests one by one would, with other fields, operators and transforms in between."""
    lists = {"none": ["zz", "yy"]}
    whole = predicate(" or ".join(parts), lists)
    assert whole(EXEC) is on_exec
    for event in (EXEC, open_read("/etc/passwd"), open_read("/tmp/x"), dns("a.com")):
        assert whole(event) is any(predicate(part, lists)(event) for part in parts)


def test_missing_field_is_false_and_negation_true() -> None:
    event = dns("a.com")
    assert predicate("proc.name = bash")(event) is False
    assert predicate("not proc.name = bash")(event) is True
    assert predicate("proc.name != bash")(event) is False
