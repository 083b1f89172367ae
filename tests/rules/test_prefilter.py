"""The kernel's filters derived from rules (cauditd.rules.prefilter): what the open and connect
filters let through, and that they never drop a call a default rule matches (checked against
the engine itself)."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from cauditd.proctable import normalize_path
from cauditd.rules.engine import RuleEngine
from cauditd.rules.loader import load_ruleset
from cauditd.rules.prefilter import (
    ANY_MODE,
    READ,
    WRITE,
    ConnectFilter,
    DupFilter,
    OpenFilter,
    as_net,
    open_modes,
)
from tests.conftest import REPO
from tests.rules.synth import (
    O_CREAT,
    O_RDWR,
    O_TRUNC,
    O_WRONLY,
    connect,
    fd_placed,
    file_event,
    proc,
    syscall,
)

DEFAULT_RULES = sorted((REPO / "rules").glob("*.toml"))


MACROS = (
    '[lists]\nopen_syscalls = ["open", "openat", "openat2", "creat"]\n'
    '[macros]\nopen_read = "evt.type in (open_syscalls) and evt.is_open_read = true"\n'
    'open_write = "evt.type in (open_syscalls) and evt.is_open_write = true"\n'
)


def derive(tmp_path: Path, condition: str) -> OpenFilter:
    return ruleset_of(tmp_path, condition).open_filter()


def derive_connects(tmp_path: Path, condition: str) -> ConnectFilter:
    return ruleset_of(tmp_path, condition).connect_filter()


def ruleset_of(tmp_path: Path, condition: str) -> Any:
    rules = tmp_path / "r.toml"
    rules.write_text(f'{MACROS}\n[[rules]]\nname = "r"\ncondition = """{condition}"""\n'
                     'output = "x"\npriority = "warning"\n')
    return load_ruleset([rules])


@pytest.fixture(scope="module")
def default_filter() -> OpenFilter:
    return load_ruleset(DEFAULT_RULES).open_filter()


def test_default_rules_let_through_what_they_watch(default_filter: OpenFilter) -> None:
    assert not default_filter.is_everything
    assert default_filter.passes("/etc/shadow", READ)
    assert default_filter.passes("/etc/nginx/nginx.conf", WRITE)
    assert default_filter.passes("/root/.ssh/id_rsa", READ)
    assert default_filter.passes("/proc/1/environ", READ)
    assert default_filter.passes("/home/app/.bash_history", WRITE)
    assert not default_filter.passes("/etc/passwd", READ)
    assert not default_filter.passes("/usr/lib/libc.so.6", READ)
    assert not default_filter.passes("/tmp/cache/x", WRITE)


def test_paths_the_kernel_cannot_judge_pass(default_filter: OpenFilter) -> None:
    for path in ("passwd", "../etc/passwd", "/etc//passwd", "/tmp/./x", "/tmp/../etc/x", "//x"):
        assert default_filter.passes(path, READ), path
    assert normalize_path("//etc/./shadow") == "/etc/shadow"
    assert normalize_path("/tmp/../etc/shadow") == "/etc/shadow"


def test_prefix_entries_inherit_the_modes_of_shorter_prefixes(tmp_path: Path) -> None:
    f = derive(tmp_path, "(open_write and fd.name startswith /etc/) or "
                         "(open_read and fd.name = /etc/shadow)")
    assert f.prefixes() == {"/etc/": WRITE, "/etc/shadow\0": READ | WRITE}
    assert f.passes("/etc/shadow", WRITE) and f.passes("/etc/shadow", READ)
    assert not f.passes("/etc/hosts", READ)


@pytest.mark.parametrize(("condition", "expected"), [
    ("open_read and fd.name in (/a, /b)", "opens of 2 exacts"),
    ("open_write and fd.directory = /etc/cron.d", "opens of 1 prefixes"),
    ("evt.type = openat and fd.filename = id_rsa", "opens of 1 names"),
    ("open_read and fd.name glob /proc/*/environ", "opens of 1 prefixes"),
    ("open_write and not fd.name startswith /tmp", "opens of all writes"),
    ("open_read and proc.name = cat", "opens of all reads"),
    ("evt.type = unlink and fd.name startswith /etc", "no opens"),
    ("open_write and evt.arg.newpath startswith /etc", "no opens"),
    ("evt.type in (open_syscalls) and evt.arg.path startswith /srv", "opens of 1 prefixes"),
    ("fd.name startswith /etc or evt.type = unlink", "opens of 1 prefixes"),
    ("fd.name startswith /etc or proc.name = cat", "every open"),
    ("proc.name = cat", "every open"),
    # what the filter cannot key on widens: transformers, val(), iglob, the byte operators
    ("open_read and tolower(fd.name) = /etc/shadow", "opens of all reads"),
    ("open_read and basename(fd.name) = shadow", "opens of all reads"),
    ("open_read and fd.name iglob /ETC/*", "opens of all reads"),
    ("open_read and fd.name bstartswith 2f657463", "opens of all reads"),
    ("open_read and fd.name = val(proc.cwd)", "opens of all reads"),
    ("open_read and len(fd.name) > 200", "opens of all reads"),
    ("open_read and (fd.name startswith /etc or toupper(fd.filename) = ID_RSA)",
     "opens of all reads"),
])
def test_derivation(tmp_path: Path, condition: str, expected: str) -> None:
    assert derive(tmp_path, condition).describe() == expected


def test_rules_on_other_syscalls_do_not_open_the_filter(tmp_path: Path) -> None:
    rules = tmp_path / "r.toml"
    rules.write_text('[[rules]]\nname = "u"\ncondition = "evt.type = unlink"\noutput = "x"\n'
                     'priority = "notice"\n[[rules]]\nname = "o"\ncondition = '
                     '"evt.type = openat and fd.name = /etc/shadow"\noutput = "x"\n'
                     'priority = "notice"\n')
    assert load_ruleset([rules]).open_filter().describe() == "opens of 1 exacts"


def test_a_disabled_rule_does_not_count(tmp_path: Path) -> None:
    rules = tmp_path / "r.toml"
    rules.write_text('[[rules]]\nname = "all"\ncondition = "evt.type = openat"\noutput = "x"\n'
                     'priority = "notice"\nenabled = false\n')
    assert load_ruleset([rules]).open_filter().describe() == "no opens"


SAMPLE_PATHS = [
    "/etc/shadow", "/etc/shadow-", "/etc/sudoers", "/etc/sudoers.d/x", "/etc/pam.d/login",
    "/etc/passwd", "/etc/hosts", "/etc/cron.d/job", "/etc/crontab", "/var/spool/cron/root",
    "/root/.ssh/id_rsa", "/home/a/.ssh/id_ed25519", "/home/a/.ssh/known_hosts", "/bin/sh",
    "/usr/bin/evil", "/usr/local/bin/x", "/sbin/init", "/dev/shm/x", "/dev/null", "/dev/evil",
    "/var/log/syslog", "/var/log/app/a.log", "/root/.bash_history", "/home/a/.zsh_history",
    "/proc/1/environ", "/proc/self/environ", "/proc/1/cmdline", "/tmp/x", "/usr/lib/libc.so",
    "/app/config.yaml", "/etc/ssh/keys/host", "/lib/x86_64-linux-gnu/libc.so.6",
]
SAMPLE_FLAGS = [0, O_WRONLY, O_RDWR, O_WRONLY | O_CREAT, O_WRONLY | O_TRUNC,
                O_RDWR | O_CREAT | O_TRUNC]
SAMPLE_PROCESSES = [proc("/bin/cat", "cat"), proc("/bin/bash", "bash"),
                    proc("/usr/bin/vi", "vi"), proc("/usr/sbin/sshd", "sshd")]


def opens_matched_and_dropped(ruleset: Any) -> tuple[int, list[tuple[str, int]]]:
    """How many sample opens the rules match, and those of them the open filter drops."""
    engine, opens = RuleEngine(ruleset, suppress_window_s=0), ruleset.open_filter()
    matched, dropped = 0, []
    for path, flags, evt_type, process in itertools.product(
            SAMPLE_PATHS, SAMPLE_FLAGS, ("openat", "open", "openat2", "creat"),
            SAMPLE_PROCESSES):
        event = file_event(evt_type, path, flags=flags, process=process)
        if engine.match(event):
            matched += 1
            if not opens.passes(path, open_modes(evt_type, flags)):
                dropped.append((path, flags))
    return matched, dropped


def test_no_open_a_default_rule_matches_is_dropped() -> None:
    matched, dropped = opens_matched_and_dropped(load_ruleset(DEFAULT_RULES))
    assert dropped == []
    assert matched > 100  # the sample exercises the rules, not only the filter
    assert open_modes("openat", 3) == ANY_MODE


@pytest.mark.parametrize("condition", [
    "open_read and tolower(fd.name) = /etc/shadow",
    "open_write and toupper(fd.directory) = /ETC",
    "open_read and basename(fd.name) in (shadow, id_rsa)",
    "open_read and fd.name iglob /ETC/SH*",
    "open_write and fd.name bcontains 2f6574632f",
    "open_write and fd.name bstartswith 2f7573722f",
    "open_read and fd.name = val(fd.name)",
    "open_read and len(fd.filename) = 6",
    "open_read and fd.name startswith /etc and not tolower(fd.name) endswith shadow",
    "open_write and b64(fd.filename) exists",
])
def test_new_operators_never_drop_what_they_match(tmp_path: Path, condition: str) -> None:
    matched, dropped = opens_matched_and_dropped(ruleset_of(tmp_path, condition))
    assert matched > 0 and dropped == []


@pytest.fixture(scope="module")
def default_connects() -> ConnectFilter:
    return load_ruleset(DEFAULT_RULES).connect_filter()


def test_default_rules_let_through_the_connects_they_watch(default_connects: ConnectFilter) -> None:
    assert not default_connects.is_everything
    assert default_connects.passes(2, "10.1.2.3", 4444)  # a mining pool port
    assert default_connects.passes(2, "169.254.169.254", 80)  # cloud metadata
    assert default_connects.passes(10, "fd00:ec2::254", 80)
    assert default_connects.passes(10, "::ffff:169.254.169.254", 80)  # v4-mapped: same key
    assert not default_connects.passes(2, "10.1.2.3", 443)
    assert not default_connects.passes(10, "2001:db8::1", 80)
    assert default_connects.passes(1, "/run/app.sock", 0)  # not IP: user space judges
    assert as_net("10.0.0.0/8") == as_net("::ffff:10.0.0.0/104")


@pytest.mark.parametrize(("condition", "expected"), [
    ("evt.type = connect and fd.dport in (22, 2222)", "connects to 2 ports"),
    ("evt.type = connect and fd.dip = 10.0.0.0/8", "connects to 1 networks"),
    ("evt.type = sendto and fd.net in (10.0.0.0/8, 192.168.0.0/16)", "connects to 2 networks"),
    ("evt.type = connect and fd.dport = 22 and fd.dip = 10.0.0.0/8", "connects to 1 ports"),
    ("evt.type = connect and fd.dip = 10.0.0.0/8 and fd.dip = 10.1.0.0/16",
     "connects to 1 networks"),
    ("evt.type = connect and fd.dip = 10.0.0.0/8 and fd.dip = 192.168.0.1", "no connects"),
    ("evt.type = connect and not fd.dport = 443", "every connect"),
    ("evt.type = openat and fd.name = /etc/shadow", "no connects"),
    ("evt.type = connect and proc.name = curl", "every connect"),
    # Falco's names of the peer: server and remote end
    ("evt.type = connect and fd.sport in (80, 8080)", "connects to 2 ports"),
    ("evt.type = sendto and fd.rport = 53", "connects to 1 ports"),
    ("evt.type = connect and fd.port = 22", "connects to 1 ports"),
    ("evt.type = connect and fd.snet = 10.0.0.0/8", "connects to 1 networks"),
    ("evt.type = connect and fd.rip in (169.254.169.254)", "connects to 1 networks"),
    ("evt.type = connect and fd.ip = 10.0.0.0/8", "connects to 1 networks"),
    ("evt.type = connect and fd.cport = 5555", "every connect"),
    ("evt.type = connect and fd.lip = 10.0.0.1", "every connect"),
    ("evt.type = connect and tolower(fd.sip.name) = x", "every connect"),
])
def test_connect_derivation(tmp_path: Path, condition: str, expected: str) -> None:
    assert derive_connects(tmp_path, condition).describe() == expected


SAMPLE_DESTINATIONS = [
    (2, "10.1.2.3", 4444), (2, "10.1.2.3", 443), (2, "169.254.169.254", 80),
    (2, "100.100.100.200", 80), (10, "fd00:ec2::254", 80), (10, "2001:db8::1", 3333),
    (10, "2001:db8::1", 80), (2, "127.0.0.1", 14444), (1, "/run/docker.sock", 0),
    (10, "::ffff:169.254.169.254", 80), (10, "::ffff:10.1.2.3", 443),
]


def connects_matched_and_dropped(ruleset: Any) -> tuple[int, list[tuple[str, int]]]:
    engine, connects = RuleEngine(ruleset, suppress_window_s=0), ruleset.connect_filter()
    matched, dropped = 0, []
    for (family, addr, port), evt_type in itertools.product(
            SAMPLE_DESTINATIONS, ("connect", "sendto", "sendmsg", "sendmmsg")):
        if engine.match(connect(addr, port, evt_type=evt_type, family=family)):
            matched += 1
            if not connects.passes(family, addr, port):
                dropped.append((addr, port))
    return matched, dropped


def test_no_connect_a_default_rule_matches_is_dropped() -> None:
    matched, dropped = connects_matched_and_dropped(load_ruleset(DEFAULT_RULES))
    assert matched >= 20 and dropped == []


@pytest.mark.parametrize("condition", [
    "evt.type in (connect, sendto) and fd.sport in (4444, 80)",
    "evt.type = connect and fd.rport = 4444 and fd.rip = 10.0.0.0/8",
    "evt.type in (connect, sendto) and fd.port > 1000",
    "evt.type = connect and fd.snet in (169.254.0.0/16, fd00::/8)",
    "evt.type = connect and fd.ip = 10.1.2.3 and not fd.cport exists",
    "evt.type in (connect, sendto) and fd.sip = val(fd.rip)",
    "evt.type = connect and fd.l4proto = tcp and fd.connected = true",
    "evt.type = sendto and fd.name_changed = true and fd.connected = false",
])
def test_falco_peer_fields_never_drop_what_they_match(tmp_path: Path, condition: str) -> None:
    matched, dropped = connects_matched_and_dropped(ruleset_of(tmp_path, condition))
    assert matched > 0 and dropped == []


def test_a_v4_mapped_destination_meets_the_ipv4_rules() -> None:
    """Decoders report ::ffff:a.b.c.d as a.b.c.d; a rule written with the mapped spelling
    meets the plain address too."""
    engine = RuleEngine(load_ruleset(DEFAULT_RULES), suppress_window_s=0)
    assert {f.rule for f in engine.match(connect("169.254.169.254", 80, family=10))} == {
        "Contact cloud metadata service from container"}
    assert as_net("::ffff:169.254.169.254") == as_net("169.254.169.254")


@pytest.mark.parametrize(("condition", "sockets_only"), [
    ("evt.type = dup2 and evt.arg.oldfd_is_socket = 1", True),
    ("evt.type in (dup, dup3) and evt.rawarg.oldfd_is_socket = true and proc.name = sh", True),
    ("evt.type = dup2 and evt.arg.newfd = 0", False),
    ("evt.type = dup2 and not evt.arg.oldfd_is_socket = 0", False),
])
def test_dup_derivation(tmp_path: Path, condition: str, sockets_only: bool) -> None:
    assert ruleset_of(tmp_path, condition).dup_filter().sockets_only is sockets_only


def test_default_rules_want_only_dups_of_sockets() -> None:
    dups: DupFilter = load_ruleset(DEFAULT_RULES).dup_filter()
    assert dups.sockets_only and dups.passes(True) and not dups.passes(False)
    engine = RuleEngine(load_ruleset(DEFAULT_RULES), suppress_window_s=0)
    for evt_type, newfd, is_socket in itertools.product(("dup", "dup2", "dup3"), (0, 1, 2),
                                                        (0, 1)):
        event = syscall(evt_type, {"oldfd": 5, "newfd": newfd, "oldfd_is_socket": is_socket})
        if engine.match(event):
            assert dups.passes(bool(is_socket))


# --- the kernel judges the file it opened (issue 12) ----------------------------------------

# (path as written, the file the kernel opened): a symlinked directory, a relative path, the
# process's root through /proc, padding, a dirfd-relative name; the kernel judges the second.
RESOLVED = [
    ("/tmp/e/shadow", "/etc/shadow"), ("../etc/shadow", "/etc/shadow"),
    ("/proc/self/root/etc/sudoers", "/etc/sudoers"), ("shadow", "/etc/shadow"),
    ("./" * 150 + "etc/shadow", "/etc/shadow"), ("/tmp/k/id_rsa", "/root/.ssh/id_rsa"),
    ("/tmp/e/passwd", "/etc/passwd"), ("/tmp/b/evil", "/usr/bin/evil"),
    ("/proc/self/environ", "/proc/42/environ"), ("x", "/var/log/syslog"),
]


def opened(raw: str, resolved: str, flags: int, ret: int, mode: int = 0o644,
           evt_type: str = "openat") -> Any:
    """An open as the process table hands it to the rules: fd.name is the file the kernel
    opened (success) or the path as written made absolute (failure, joined with /tmp)."""
    path = resolved if ret >= 0 else normalize_path("/tmp/" + raw if raw[0] != "/" else raw)
    event = file_event(evt_type, path, flags=flags, ret=ret, mode=mode)
    event.raw_path = raw
    return event


def test_no_open_a_default_rule_matches_is_dropped_by_its_resolved_path(
        default_filter: OpenFilter) -> None:
    engine = RuleEngine(load_ruleset(DEFAULT_RULES), suppress_window_s=0)
    matched = 0
    for (raw, resolved), flags, ret, mode in itertools.product(
            RESOLVED, SAMPLE_FLAGS, (3, -2), (0o644, 0o4755)):
        event = opened(raw, resolved, flags, ret, mode)
        if engine.match(event):
            matched += 1
            judged = resolved if ret >= 0 else raw  # what the kernel has in hand
            assert default_filter.passes(judged, open_modes("openat", flags), failed=ret < 0,
                                         setid=bool(mode & 0o6000)), (raw, flags, ret, mode)
    assert matched > 40


def test_the_default_rules_judge_failed_opens_as_written_and_want_setuid_creations() -> None:
    opens = load_ruleset(DEFAULT_RULES).open_filter()
    assert opens.failed  # "Process executable written through /proc" counts attempts
    assert opens.passes("/proc/self/exe", WRITE, failed=True)
    assert not opens.passes("/tmp/x", READ, failed=True)
    assert opens.setid_modes == WRITE
    assert opens.passes("/tmp/s", WRITE, setid=True) and not opens.passes("/tmp/s", WRITE)


@pytest.mark.parametrize(("condition", "failed", "setid"), [
    ("open_read and fd.name = /x", True, 0),
    ("open_read and evt.rawres >= 0 and fd.name = /x", False, 0),
    ("open_read and evt.res = SUCCESS and fd.name = /x", False, 0),
    ("open_read and evt.failed = true and fd.name = /x", True, 0),
    ("open_read and fd.num in (0, 1, 2) and fd.name = /x", False, 0),
    ("open_read and evt.rawres < 0 and fd.name = /x", True, 0),
    ("open_write and evt.arg.mode contains S_ISUID", True, WRITE),
    ("open_write and evt.rawres >= 0 and evt.arg.mode contains S_ISGID", False, WRITE),
    ("open_write and evt.is_open_setid = true", True, WRITE),
    ("open_write and evt.arg.mode contains S_IWOTH", True, 0),
])  # fmt: skip
def test_result_and_setid_derivation(tmp_path: Path, condition: str, failed: bool,
                                     setid: int) -> None:
    opens = derive(tmp_path, condition)
    assert (opens.failed, opens.setid_modes) == (failed, setid)


def test_shells_wired_through_pipes_let_connects_of_piped_processes_through(
        tmp_path: Path) -> None:
    connects = derive_connects(tmp_path, "evt.type = connect and "
                               "proc.stdio_wired_to_network intersects (sh, bash)")
    assert connects.piped and not connects.is_everything
    assert connects.passes(2, "10.1.2.3", 443, piped=True)
    assert not connects.passes(2, "10.1.2.3", 443)
    assert connects.describe() == "connects to processes with piped stdio"
    assert load_ruleset(DEFAULT_RULES).connect_filter().piped
    opens = load_ruleset(DEFAULT_RULES).open_filter()  # a FIFO's open can close the loop
    assert opens.fifo and opens.passes("/tmp/f", READ, fifo=True)
    assert not opens.passes("/tmp/f", READ) and not opens.passes("/tmp/f", READ, fifo=True,
                                                                   failed=True)


@pytest.mark.parametrize(("condition", "piped_only"), [
    ("evt.type in (accept, accept4) and proc.stdio_wired_to_network intersects (sh)", True),
    ("evt.type = accept and proc.stdio_wired_to_network exists", True),
    ("evt.type = accept4 and proc.name = nc", False),  # not a fact the kernel judges
    ("evt.type = accept and (proc.stdio_wired_to_network intersects (sh) or fd.sport = 22)",
     False),
])
def test_accepts_pass_only_from_piped_processes_when_every_rule_asks_that(
        tmp_path: Path, condition: str, piped_only: bool) -> None:
    accepts = ruleset_of(tmp_path, condition).accept_filter()
    assert accepts.piped_only is piped_only
    assert accepts.passes(piped=True) and accepts.passes(piped=False) is not piped_only
    # the default rules: the bind shell through a FIFO's relay, and no other accept
    assert load_ruleset(DEFAULT_RULES).accept_filter().piped_only


@pytest.mark.parametrize(("condition", "fifo_only"), [
    ("evt.type = openat and fd.type = pipe", True),
    ("evt.type = openat and fd.typechar in (p)", True),
    ("evt.type = openat and fd.type in (pipe, file)", False),
    ("evt.type = openat and not fd.type = pipe", False),
    # The process's wiring says nothing about the file: every open it makes may match.
    ("evt.type = openat and proc.stdio_wired_to_network intersects (sh)", False),
])
def test_fifo_opens_are_told_by_the_file_type(tmp_path: Path, condition: str,
                                              fifo_only: bool) -> None:
    opens = derive(tmp_path, condition)
    assert opens.passes("/tmp/f", READ, fifo=True)
    assert opens.passes("/usr/lib/x.so", READ) is not fifo_only


@pytest.mark.parametrize(("condition", "sockets_only", "outbound_only"), [
    ("evt.type = fcntl and fd.type in (ipv4, ipv6)", True, False),
    ("evt.type = dup2 and fd.type = pipe", False, False),
    ("evt.type = dup3 and fd.type = ipv4 and fd.is_server = false", True, True),
    ("evt.type = dup3 and fd.is_server = true", False, False),
])  # fmt: skip
def test_dup_kinds_derivation(tmp_path: Path, condition: str, sockets_only: bool,
                              outbound_only: bool) -> None:
    dups = ruleset_of(tmp_path, condition).dup_filter()
    assert (dups.sockets_only, dups.outbound_only) == (sockets_only, outbound_only)


def test_no_dup_a_default_rule_matches_is_dropped() -> None:
    dups = load_ruleset(DEFAULT_RULES).dup_filter()
    assert dups.outbound_only
    engine = RuleEngine(load_ruleset(DEFAULT_RULES), suppress_window_s=0)
    hits = 0
    for evt_type, fd, kind, accepted in itertools.product(
            ("dup", "dup2", "dup3", "fcntl"), (0, 1, 2, 5), ("ipv4", "ipv6", "unix", "pipe",
                                                           "file"), (False, True)):
        if engine.match(fd_placed(evt_type, kind, fd=fd, accepted=accepted)):
            hits += 1
            assert dups.passes(kind in ("ipv4", "ipv6", "unix"), accepted)
    assert hits == 4 * 3 * 2  # dup calls x fds 0-2 x inet families, never accepted


@pytest.mark.parametrize(
    ("condition", "needed"),
    [
        ("evt.type = flow_new and net.direction = egress", False),
        ("evt.type = flow_new and net.direction = ingress and net.port_first_seen = true", False),
        ("evt.type = flow_new and (net.direction = egress or net.port_first_seen = true)", False),
        ("evt.type = flow_end and net.direction = ingress", False),  # not a flow_new
        ("evt.type = flow_new and net.direction = ingress", True),
        ("evt.type = flow_new and fd.sip = 10.0.0.1", True),
        ("evt.type = flow_new and not net.direction = ingress", True),  # not reasoned about
        ("evt.type = flow_new and (net.direction = egress or fd.dport = 22)", True),
        ("net.direction = egress or fd.dport = 22", True),  # any event type
    ],
)
def test_which_rules_need_new_inbound_flows_to_served_ports(
        tmp_path: Path, condition: str, needed: bool) -> None:
    rules = tmp_path / "r.toml"
    rules.write_text(f'[[rules]]\nname = "n"\ncondition = """{condition}"""\noutput = "x"\n'
                     'priority = "notice"\nsource = "network"\n')
    assert load_ruleset([rules]).served_inbound_flows() is needed


def test_the_default_rules_need_no_new_inbound_flow_to_a_served_port() -> None:
    assert not load_ruleset(DEFAULT_RULES).served_inbound_flows()


ALL_FAMILIES = set(range(64))


@pytest.mark.parametrize(("condition", "always", "on_stdio"), [
    ("evt.type = socket and evt.arg.domain = 17", {17}, set()),
    ("evt.type = socket and evt.arg.domain = AF_PACKET", {17}, set()),
    ("evt.type = socket and evt.rawarg.domain in (2, 10)", {2, 10}, set()),
    ("evt.type = socket and evt.arg.domain contains AF_INET", {2, 10}, set()),
    ("evt.type = socket and evt.arg.domain contains AF_UNIX", {1}, set()),  # AF_LOCAL|AF_UNIX
    ("evt.type = socket and evt.rawres in (0, 1, 2) and evt.arg.domain = 2", set(), {2}),
    ("evt.type = socket and fd.num = 0", set(), ALL_FAMILIES),
    ("evt.type = socket and evt.arg.domain = 99", {63}, set()),  # families >= 63 share a bit
    ("evt.type = socket and evt.arg.domain = AF_NOSUCH", ALL_FAMILIES, set()),
    ("evt.type = socket and evt.arg.domain contains 1", ALL_FAMILIES, set()),  # digits: any
    ("evt.type = socket and evt.rawres = 5", ALL_FAMILIES, set()),
    ("evt.type = socket and not evt.arg.domain = 2", ALL_FAMILIES, set()),
    ("evt.type = socket and proc.name = nc", ALL_FAMILIES, set()),
    ("evt.type = connect and evt.arg.domain = 2", set(), set()),  # no socket() matches
])  # fmt: skip
def test_socket_derivation(tmp_path: Path, condition: str, always: set[int],
                           on_stdio: set[int]) -> None:
    sockets = ruleset_of(tmp_path, condition).socket_filter()
    assert (families(sockets.always), families(sockets.on_stdio)) == (always, on_stdio)


def families(mask: int) -> set[int]:
    return {bit for bit in range(64) if mask >> bit & 1}


def test_no_socket_a_default_rule_matches_is_dropped() -> None:
    """Every socket() a default rule matches passes the derived filter (brute force over
    families and results); the sockets servers and clients make every second do not."""
    sockets = load_ruleset(DEFAULT_RULES).socket_filter()
    engine = RuleEngine(load_ruleset(DEFAULT_RULES), suppress_window_s=0)
    hits = 0
    for domain, fd in itertools.product(range(70), (-13, 0, 1, 2, 3, 9)):
        if engine.match(syscall("socket", {"domain": domain, "type": 1, "protocol": 0}, ret=fd)):
            hits += 1
            assert sockets.passes(domain, fd), (domain, fd)
    assert hits == 6 + 2 * 3  # AF_PACKET at any result; AF_INET/AF_INET6 on fds 0-2
    assert not sockets.passes(2, 3) and not sockets.passes(10, 7) and not sockets.passes(1, 0)


@pytest.mark.parametrize(("condition", "names"), [
    ("evt.type = execve and proc.env[LD_PRELOAD] exists", {"LD_PRELOAD"}),
    ('evt.type = execve and proc.env contains "GLIBC_TUNABLES="', {"GLIBC_TUNABLES"}),
    ('evt.type = execve and proc.env contains (LD_AUDIT=, "LD_PRELOAD=/tmp")',
     {"LD_AUDIT", "LD_PRELOAD"}),
    ('evt.type = execve and not proc.env[HOME] = /root', {"HOME"}),  # read under a negation
    ('evt.type = execve and (proc.name = sh or proc.env[A] = 1) and proc.env[B] = 2', {"A", "B"}),
    ("evt.type = execve and proc.name = sh", set()),
    # what no list of names covers: a bare word, another operator, a transform
    ('evt.type = execve and proc.env contains "secret"', None),
    ('evt.type = execve and proc.env startswith "PATH="', None),
    ('evt.type = execve and tolower(proc.env) contains "ld_preload="', None),
    ('evt.type = execve and (proc.env[A] = 1 or proc.env icontains "x=")', None),
])
def test_the_environment_variables_a_rule_reads(tmp_path: Path, condition: str,
                                                names: set[str] | None) -> None:
    """The names the kernel looks for past an exec record's 2 KiB of environment; None: the
    rule reads it some other way (no walk: the whole environment comes from /proc)."""
    found = ruleset_of(tmp_path, condition).env_names()
    assert found == (None if names is None else frozenset(names))


def test_the_default_rules_read_one_environment_variable() -> None:
    assert load_ruleset(DEFAULT_RULES).env_names() == {"GLIBC_TUNABLES"}
