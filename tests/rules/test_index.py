"""The indexes (cauditd.rules.index): an open or an exec is tested only against the rules that
may match it, and never loses one that does (checked against every rule's predicate)."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import pytest

from cauditd.events import Event, FileEvent
from cauditd.rules import index
from cauditd.rules.loader import load_ruleset
from cauditd.rules.ruleset import Rule, RuleSet
from tests.rules.synth import (
    BASH,
    O_CREAT,
    O_WRONLY,
    WORKER,
    dns,
    execve,
    file_event,
    flow,
    open_read,
    proc,
)
from tests.rules.test_prefilter import (
    DEFAULT_RULES,
    SAMPLE_FLAGS,
    SAMPLE_PATHS,
    SAMPLE_PROCESSES,
    ruleset_of,
)

OPEN_TYPES = ("openat", "open", "openat2", "creat")
TRICKY_PATHS = ["", "etc/shadow", "shadow", "/etc", "/etc/", "/", "/dev", "/devices",
                "/usr/bin", "/binary", "/root/.ssh/authorized_keys", "/proc/1/exe",
                "/sys/fs/cgroup/x/release_agent", "/etc/cron.daily/x", "/var/log",
                "/home/a/.bash_history/", "//etc/shadow", "/etc/./shadow", "x" * 300]
WIRED = dataclasses.replace(proc("/bin/sh", "sh", "-i"), stdio_wired=("sh",))


def matching(ruleset: RuleSet, event: Event) -> list[Rule]:
    """Every enabled rule of the event's type whose condition holds, tested one by one."""
    found = []
    for rule in ruleset.by_type.get(event.type, ()):
        try:
            if rule.predicate(event):
                found.append(rule)
        except Exception:  # a rule that raises matches nothing
            continue
    return found


FIFO, REGULAR = 0o010644, 0o100644  # the opened file's i_mode


def opens() -> list[FileEvent]:
    processes = [*SAMPLE_PROCESSES, WIRED, BASH]
    made = [
        file_event(evt_type, path, flags=flags, mode=mode, ret=ret, process=process)
        for path, flags, evt_type, process, ret, mode in itertools.product(
            SAMPLE_PATHS + TRICKY_PATHS, SAMPLE_FLAGS, OPEN_TYPES, processes, (3, -2),
            (0o644, 0o4755))
    ]
    opened = [e for e in made if e.ret >= 0 and e.process in (WIRED, BASH)]
    return [*made, *(dataclasses.replace(e, file_mode=kind) for e in opened
                     for kind in (FIFO, REGULAR))]


EXES = ["/usr/bin/curl", "/usr/bin/wget", "/bin/nc", "/bin/sh", "/bin/bash", "/usr/bin/apt",
        "/usr/bin/base64", "/usr/bin/crontab", "/usr/bin/find", "/bin/grep", "/sbin/debugfs",
        "/usr/bin/docker", "/usr/bin/python3", "/bin/busybox", "/dev/shm/x", "/tmp/nmap",
        "/usr/bin/shred", "/usr/bin/scp", "/usr/bin/ncat", "/x/" + "a" * 40]
ARGVS = [(), ("-c", "id"), ("-d",), ("-l",), ("-e", "/bin/sh", "10.0.0.1", "4444"),
         ("-r", "id_rsa", "/"), ("stratum+tcp://pool:3333",), ("-o", "/tmp/x", "http://h/")]


def execs() -> list[Event]:
    return [
        execve(exe, exe.rsplit("/", 1)[-1], *argv, parent=parent)
        for exe, argv, parent in itertools.product(EXES, ARGVS, (BASH, WORKER, None))
    ]


def network_events() -> list[Event]:
    made: list[Event] = [
        flow(dip, port, evt_type=evt_type, direction=direction, proto=proto, nbytes=nbytes)
        for evt_type, direction, (dip, port), proto, nbytes in itertools.product(
            ("flow_new", "flow_end"), ("egress", "ingress"),
            (("10.0.0.9", 80), ("10.0.0.9", 4444), ("8.8.8.8", 53), ("172.17.0.2", 22)),
            ("tcp", "udp", "icmp"), (100, 2 << 30))
    ]
    for name, evt_type in itertools.product(("example.com", "x" * 60 + ".tk"),
                                            ("dns_query", "dns_response")):
        made.append(dns(name, evt_type=evt_type))
        made.append(dataclasses.replace(dns(name, evt_type=evt_type), direction="ingress"))
    return made


def missed(ruleset: RuleSet) -> tuple[int, list[tuple[str, str]]]:
    """How many (event, rule) matches the sample has, and those the index would not test."""
    matches, lost = 0, []
    for event in (*opens(), *execs(), *network_events()):
        candidates = ruleset.candidates(event)
        for rule in matching(ruleset, event):
            matches += 1
            if rule not in candidates:
                lost.append((rule.name, repr(event)[:200]))
    return matches, lost


@pytest.fixture(scope="module")
def default_set() -> RuleSet:
    return load_ruleset(DEFAULT_RULES)


def test_no_open_a_default_rule_matches_is_left_untested(default_set: RuleSet) -> None:
    matches, lost = missed(default_set)
    assert lost == []
    assert matches > 200  # the sample exercises the rules


def test_an_open_no_rule_watches_is_tested_against_few_rules(default_set: RuleSet) -> None:
    every = default_set.by_type["openat"]
    library = default_set.candidates(open_read("/usr/lib/x86_64-linux-gnu/libc.so.6"))
    assert len(every) > 10
    assert library == ()  # the reverse shell rule looks at FIFO opens alone
    fifo = dataclasses.replace(open_read("/tmp/f"), file_mode=FIFO)
    assert [r.name for r in default_set.candidates(fifo)] == ["Reverse shell through pipes"]
    write = default_set.candidates(file_event("openat", "/etc/passwd", flags=O_WRONLY))
    assert "Write below etc" in [r.name for r in write]
    assert list(write) == [r for r in every if r in write]  # rule order kept


def test_setuid_creations_reach_their_rule(default_set: RuleSet) -> None:
    plain = file_event("openat", "/tmp/x", flags=O_WRONLY | O_CREAT, mode=0o755)
    setuid = file_event("openat", "/tmp/x", flags=O_WRONLY | O_CREAT, mode=0o4755)
    names = [r.name for r in default_set.candidates(setuid)]
    assert "Set setuid or setgid bit" in names
    assert "Set setuid or setgid bit" not in [r.name for r in default_set.candidates(plain)]


@pytest.mark.parametrize("condition", [
    "open_read and tolower(fd.name) = /etc/shadow",
    "open_write and fd.directory = /etc",
    "open_write and fd.directory in (/etc, /usr/bin/)",
    "open_read and fd.filename in (shadow, id_rsa)",
    "open_read and fd.name pmatch (/etc, /root/.ssh)",
    "open_read and fd.name glob '/etc/sh*'",
    "open_read and evt.arg.name startswith /proc/",
    "open_read and evt.failed = true and fd.name = etc/shadow",
    "evt.type = openat and evt.rawres < 0",
    "evt.type = openat and fd.num >= 0 and fd.name contains shadow",
    "evt.type in (openat, execve) and proc.name = cat",
    "open_write and evt.is_open_setid = true",
    "open_read and not fd.name startswith /etc",
    "open_read and fd.name startswith /etc or open_write and fd.filename = x",
    "evt.type = execve and proc.name in (curl, wget)",
    "evt.type = execve and (proc.name = nc or proc.args contains stratum)",
    "evt.type = execve and not proc.name in (sh, bash)",
    "evt.type = execve and proc.name = sh and proc.name = bash",
    "evt.type = execve and proc.name in (sh, curl) and proc.name in (curl, wget)",
    "evt.type = execve and (proc.name = find and proc.pname = bash or proc.name = base64)",
    "evt.type = execve and toupper(proc.name) = CURL",
    "evt.type = openat and fd.type = pipe",
    "open_read and fd.typechar in (p) and fd.name startswith /etc",
    "evt.type = openat and not fd.type = pipe",
    "evt.type in (openat, open) and fd.type in (pipe, directory)",
])
def test_conditions_never_lose_a_match(tmp_path: Path, condition: str) -> None:
    matches, lost = missed(ruleset_of(tmp_path, condition))
    assert lost == []
    assert matches > 0 or "proc.name = bash" in condition  # sh and bash: nothing can match


NETWORK_MACROS = ('[lists]\nout_dirs = ["egress"]\n'
                  '[macros]\nflow_out = "net.direction = egress"\n'
                  'flow_in = "net.direction in (ingress)"\n')


@pytest.mark.parametrize("condition", [
    "flow_out and fd.dport = 4444",
    "net.direction = egress or net.direction = ingress",
    "net.direction in (out_dirs) and evt.type = flow_end",
    "flow_in and net.bytes > 1000",
    "not flow_out and fd.dport = 80",
    "net.direction != egress",
    "(flow_out or fd.dport = 22) and fd.l4proto = tcp",
    "flow_out and flow_in",
    "toupper(net.direction) = EGRESS",
    "evt.type = flow_end and (flow_in or flow_out and net.bytes > 1000)",
    "evt.type = dns_query and dns.qname endswith .tk",
])
def test_network_conditions_never_lose_a_match(tmp_path: Path, condition: str) -> None:
    rules = tmp_path / "r.toml"
    rules.write_text(f'{NETWORK_MACROS}\n[[rules]]\nname = "r"\ncondition = """{condition}"""\n'
                     'output = "x"\npriority = "warning"\nsource = "network"\n')
    matches, lost = missed(load_ruleset([rules]))
    assert lost == []
    assert matches > 0 or condition == "flow_out and flow_in"


def test_an_ingress_flow_end_is_tested_against_no_default_rule(default_set: RuleSet) -> None:
    """A server's clients end thousands of flows a second; the default rules on flow_end
    all ask for egress."""
    assert default_set.by_type["flow_end"]
    assert default_set.candidates(flow("10.0.0.9", 80, evt_type="flow_end",
                                       direction="ingress")) == ()
    egress = default_set.candidates(flow("10.0.0.9", 80, evt_type="flow_end"))
    assert egress == default_set.by_type["flow_end"]


def test_an_exec_is_tested_against_the_rules_naming_its_program(default_set: RuleSet) -> None:
    every = default_set.by_type["execve"]
    python = [r.name for r in default_set.candidates(execve("/usr/bin/python3", "python3"))]
    curl = [r.name for r in default_set.candidates(execve("/usr/bin/curl", "curl"))]
    named = {r.name for r in every if r.execs and all(c.name is not None for c in r.execs)}
    assert len(named) >= len(every) // 3  # about half the default exec rules name programs
    assert not named & set(python) and len(python) == len(every) - len(named)
    assert "Ingress tool download in container" in curl
    assert "Ingress tool download in container" not in python


def test_the_path_memory_stays_bounded_and_answers_the_same(
        default_set: RuleSet, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(index, "MAX_PATHS", 64)
    fresh = load_ruleset(DEFAULT_RULES)
    opened = [file_event("openat", f"/etc/cron.d/job{n}", flags=O_WRONLY) for n in range(200)]
    first = [fresh.candidates(event) for event in opened]
    assert len(fresh.indexes["openat"]._by_path) <= 64
    assert [fresh.candidates(event) for event in opened] == first
    assert all("Cron configuration changed" in [r.name for r in c] for c in first)
    assert [r.name for r in first[0]] == [r.name for r in default_set.candidates(opened[0])]
