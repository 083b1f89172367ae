"""The probes end to end: real containers, real kernel, one in-process Daemon for the module.

Each test runs a container doing one thing and finds the decoded event with the right
container id, name and image, process and parent, arguments and result.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cauditd.events import (
    ExecEvent,
    ExitEvent,
    FileEvent,
    ForkEvent,
    NetSyscallEvent,
    SyscallEvent,
)
from cauditd.probes.layout import KernelLayout
from tests.conftest import TEST_IMAGE, Containers, DaemonThread

pytestmark = pytest.mark.usefixtures("ebpf", "docker")

CLONE_NEWUTS = 0x04000000
PTRACE_ATTACH = 16
PROBE = "cauditd_probe"
PRIV = ("--cap-add", "SYS_ADMIN", "--security-opt", "seccomp=unconfined")


def run(containers: Containers, *args: str, options: tuple[str, ...] = ()) -> str:
    """Run a container to completion; returns its full id."""
    name = f"cauditd-t-{uuid.uuid4().hex[:10]}"
    result = containers.run(*args, name=name, options=("--network", "none", *options))
    assert result.returncode == 0, result.stderr
    return containers.inspect_id(name)


def in_container(container_id: str, kind: type, evt_type: str, **fields: Any) -> Any:
    def match(ev: Any) -> bool:
        return (
            isinstance(ev, kind)
            and ev.type == evt_type
            and ev.container.id == container_id
            and all(getattr(ev, k) == v for k, v in fields.items())
        )

    return match


def assert_named(ev: SyscallEvent, container_id: str) -> None:
    assert ev.container.id == container_id
    assert ev.container.name.startswith("cauditd-t-")
    assert ev.container.image == TEST_IMAGE
    assert ev.process is not None and ev.process.pid == ev.pid


def test_first_exec_of_a_container_carries_name_and_image(
    running_daemon: DaemonThread, containers: Containers
) -> None:
    cid = run(containers, "cat", "/etc/shadow")
    ev = running_daemon.wait_for(in_container(cid, ExecEvent, "execve"))
    assert_named(ev, cid)
    assert ev.argv == ("cat", "/etc/shadow")
    # the file the kernel runs (/bin/cat is a symlink to busybox), and the name it was run by
    assert (ev.exe, ev.filename, ev.process.name) == ("/bin/busybox", "/bin/cat", "cat")
    assert ev.cwd == "/"
    assert not ev.is_exe_upper_layer and not ev.is_exe_from_memfd
    assert ev.ns_pid == 1  # the container's first process, from the kernel
    assert ev.described and ev.vpid == 1 and ev.tty == 0


def test_cat_etc_shadow_is_an_open_with_its_result(
    running_daemon: DaemonThread, containers: Containers
) -> None:
    cid = run(containers, "cat", "/etc/shadow")
    ev = running_daemon.wait_for(in_container(cid, FileEvent, "openat", path="/etc/shadow"))
    assert_named(ev, cid)
    assert ev.ret >= 0 and ev.flags & 0o3 == 0  # O_RDONLY, got a descriptor
    assert ev.process.exe == "/bin/busybox" and ev.process.name == "cat"
    assert ev.process.args == ("cat", "/etc/shadow")


def test_shell_exec_into_a_running_container_names_its_parent(
    running_daemon: DaemonThread, containers: Containers
) -> None:
    name = f"cauditd-t-{uuid.uuid4().hex[:10]}"
    started = containers.run("sleep", "30", name=name, detach=True)
    assert started.returncode == 0, started.stderr
    cid = containers.inspect_id(name)
    subprocess.run(["docker", "exec", name, "sh", "-c", "/bin/echo hi; true"], check=True)
    shell = running_daemon.wait_for(in_container(cid, ExecEvent, "execve", filename="/bin/sh"))
    assert shell.argv == ("sh", "-c", "/bin/echo hi; true")
    echo = running_daemon.wait_for(in_container(cid, ExecEvent, "execve", argv=("/bin/echo", "hi")))
    assert_named(echo, cid)
    assert echo.process.parent is shell.process
    assert 1 < shell.ns_pid < echo.ns_pid  # pids in the container's namespace, not its init
    fork = running_daemon.wait_for(in_container(cid, ForkEvent, "clone", child_pid=echo.pid))
    assert fork.pid == shell.pid


def test_exec_describes_a_short_lived_process_as_it_started(
    running_daemon: DaemonThread, containers: Containers
) -> None:
    """cwd, environment and pid come from the kernel at the exec: a process gone before user
    space could read /proc is described all the same."""
    script = "cd /etc && GLIBC_TUNABLES=glibc.malloc.mxfast=1 /bin/true; true"
    cid = run(containers, "sh", "-c", script, options=("-w", "/tmp"))
    ev = running_daemon.wait_for(in_container(cid, ExecEvent, "execve", filename="/bin/true"))
    assert ev.described and ev.cwd == "/etc" and ev.vpid > 1
    assert ev.environ is not None
    assert b"\0GLIBC_TUNABLES=glibc.malloc.mxfast=1\0" in b"\0" + ev.environ
    assert ev.process.cwd == "/etc"


@pytest.fixture
def env_names(running_daemon: DaemonThread) -> Iterator[Callable[[frozenset[str]], None]]:
    """Set the variables the kernel looks for in large environments; the rules' afterwards."""
    probes = running_daemon.daemon.probes

    def set_names(names: frozenset[str]) -> None:
        running_daemon.call(lambda: probes.set_env_names(names))

    yield set_names
    ruleset = running_daemon.daemon.detector.engine.ruleset
    set_names(ruleset.env_names())


def padded_exec(running_daemon: DaemonThread, containers: Containers, variables: str) -> Any:
    """/bin/true exec'd with 64 variables of 64 bytes (4 KiB, past the record's 2 KiB) in front
    of `variables` (NAME=value ...)."""
    cid = run(containers, "sh", "-c",
              f"{variables} /usr/bin/cauditd_evade env-pad 64 64 /bin/true; true")
    ev = running_daemon.wait_for(in_container(cid, ExecEvent, "execve", filename="/bin/true"))
    assert ev.described
    return ev


def test_a_large_environment_is_walked_for_the_variables_named(
    running_daemon: DaemonThread, containers: Containers,
    env_names: Callable[[frozenset[str]], None]
) -> None:
    """Two long names that share the kernel's 16-byte key are both found; a name the walk was
    not asked for is not there; a variable of the first 2 KiB is there as it was."""
    env_names(frozenset({"KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT", "LD_PRELOAD"}))
    ev = padded_exec(running_daemon, containers, "KUBERNETES_SERVICE_HOST=10.0.0.1 "
                     "KUBERNETES_SERVICE_PORT=443 LD_PRELOAD=/tmp/x.so OTHER=1")
    variables = ev.environ.split(b"\0")
    assert {b"KUBERNETES_SERVICE_HOST=10.0.0.1", b"KUBERNETES_SERVICE_PORT=443",
            b"LD_PRELOAD=/tmp/x.so"} <= set(variables)
    assert b"OTHER=1" not in variables and b"P0=" + b"x" * 61 in variables
    assert not ev.env_too_large


def test_more_named_variables_than_the_record_keeps_is_said(
    running_daemon: DaemonThread, containers: Containers,
    env_names: Callable[[frozenset[str]], None]
) -> None:
    """Five named variables past the 2 KiB, four slots: the environment is too large to tell
    (user space reads /proc), not silently missing one."""
    env_names(frozenset({"A1", "A2", "A3", "A4", "A5"}))
    ev = padded_exec(running_daemon, containers, "A1=1 A2=2 A3=3 A4=4 A5=5")
    assert ev.env_too_large


def test_exec_gives_pid_and_terminal_as_proc_shows_them(
    running_daemon: DaemonThread, containers: Containers
) -> None:
    """A container with a terminal (docker run -t): the kernel's tty and namespace pid of the
    exec are what /proc/<pid>/stat and status say of the living process."""
    name = f"cauditd-t-{uuid.uuid4().hex[:10]}"
    started = containers.run("sh", "-c", "sleep 0; exec sleep 30", name=name, detach=True,
                             options=("--network", "none", "-t"))
    assert started.returncode == 0, started.stderr
    cid = containers.inspect_id(name)
    ev = running_daemon.wait_for(in_container(cid, ExecEvent, "execve", argv=("sleep", "30")))
    proc = Path(f"/proc/{ev.pid}")
    stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
    status = dict(line.split(":", 1) for line in (proc / "status").read_text().splitlines()
                  if ":" in line)
    assert ev.tty == int(stat[4]) != 0  # tty_nr
    assert ev.vpid == int(status["NStgid"].split()[-1]) == 1  # the exec replaced the shell


def test_write_below_etc_relative_to_cwd_is_made_absolute(
    running_daemon: DaemonThread, containers: Containers
) -> None:
    cid = run(containers, "sh", "-c", "echo x > cauditd-rel", options=("-w", "/etc"))
    ev = running_daemon.wait_for(in_container(cid, FileEvent, "openat", path="/etc/cauditd-rel"))
    assert ev.flags & 0o1 and ev.flags & 0o100  # O_WRONLY | O_CREAT
    assert ev.ret >= 0


def test_symlink_and_chmod_setuid(running_daemon: DaemonThread, containers: Containers) -> None:
    cid = run(containers, "sh", "-c", "ln -s /etc/shadow /tmp/l; touch /tmp/f; chmod u+s /tmp/f")
    link = running_daemon.wait_for(in_container(cid, FileEvent, "symlink"))
    assert (link.path, link.target, link.ret) == ("/etc/shadow", "/tmp/l", 0)
    assert link.process.parent is not None and link.process.parent.name == "sh"
    chmod = running_daemon.wait_for(
        lambda ev: (
            in_container(cid, FileEvent, ev.type, path="/tmp/f")(ev)
            and ev.type in ("chmod", "fchmodat", "fchmodat2")
        )
    )
    assert chmod.mode & 0o4000 and chmod.ret == 0


def test_exit_status(running_daemon: DaemonThread, containers: Containers) -> None:
    name = f"cauditd-t-{uuid.uuid4().hex[:10]}"
    containers.run("sh", "-c", "exit 3", name=name)
    cid = containers.inspect_id(name)
    shell = running_daemon.wait_for(in_container(cid, ExecEvent, "execve", filename="/bin/sh"))
    ev = running_daemon.wait_for(in_container(cid, ExitEvent, "procexit", pid=shell.pid))
    assert ev.ret == 3


@pytest.mark.parametrize(
    ("mode", "evt_type", "args"),
    [
        ("setns", "setns", {"nstype": CLONE_NEWUTS}),
        ("unshare", "unshare", {"flags": CLONE_NEWUTS}),
    ],
)
def test_setns_and_unshare_with_sys_admin(
    running_daemon: DaemonThread, containers: Containers, mode: str, evt_type: str, args: dict
) -> None:
    cid = run(containers, "cauditd_probe", mode, options=PRIV)
    ev = running_daemon.wait_for(in_container(cid, SyscallEvent, evt_type, comm=PROBE))
    assert_named(ev, cid)
    assert {k: ev.args[k] for k in args} == args
    assert ev.ret == 0


def test_ptrace_attach(running_daemon: DaemonThread, containers: Containers) -> None:
    cid = run(containers, "cauditd_probe", "ptrace", options=("--cap-add", "SYS_PTRACE"))
    ev = running_daemon.wait_for(
        lambda e: (
            in_container(cid, SyscallEvent, "ptrace")(e) and e.args["request"] == PTRACE_ATTACH
        )
    )
    assert ev.ret == 0 and ev.args["pid"] > 0
    assert ev.process.exe == "/usr/bin/cauditd_probe"


def test_memfd_exec_is_fileless(running_daemon: DaemonThread, containers: Containers) -> None:
    cid = run(containers, "cauditd_probe", "memfd")
    created = running_daemon.wait_for(in_container(cid, SyscallEvent, "memfd_create"))
    assert created.args["name"] == "cauditd-payload" and created.ret >= 0
    ev = running_daemon.wait_for(in_container(cid, ExecEvent, "execve", argv=("sleep", "1")))
    assert ev.is_exe_from_memfd
    assert ev.process.is_exe_from_memfd
    assert ev.process.parent is not None


def test_exe_written_into_the_container_is_upper_layer(
    running_daemon: DaemonThread, containers: Containers
) -> None:
    cid = run(containers, "sh", "-c", "cp /bin/busybox /tmp/true && /tmp/true; true")
    ev = running_daemon.wait_for(in_container(cid, ExecEvent, "execve", exe="/tmp/true"))
    assert ev.is_exe_upper_layer
    shell = running_daemon.wait_for(in_container(cid, ExecEvent, "execve", filename="/bin/sh"))
    assert not shell.is_exe_upper_layer
    layout = KernelLayout.read()
    told = layout is not None and layout.overlay  # overlayfs built in: its inodes are in BTF
    assert ev.exe_layer_known == shell.exe_layer_known == told


def test_exe_of_the_image_changed_since_start_is_upper_layer(
    running_daemon: DaemonThread, containers: Containers
) -> None:
    """A chmod copies the image's file up into the container's layer: what runs is no longer
    the image's."""
    script = "chmod 755 /usr/bin/cauditd_probe && /usr/bin/cauditd_probe getuid; true"
    cid = run(containers, "sh", "-c", script)
    ev = running_daemon.wait_for(in_container(cid, ExecEvent, "execve",
                                              exe="/usr/bin/cauditd_probe"))
    assert ev.is_exe_upper_layer


def test_connect_without_a_network_is_seen(
    running_daemon: DaemonThread, containers: Containers
) -> None:
    cid = run(containers, "cauditd_probe", "connect", "10.99.0.1", "3333")
    ev = running_daemon.wait_for(in_container(cid, NetSyscallEvent, "connect", comm=PROBE))
    assert_named(ev, cid)
    assert (ev.family, ev.addr, ev.port, ev.sock_type) == (2, "10.99.0.1", 3333, 1)
    assert ev.ret < 0  # no route: the syscall happened, no packet left


def test_bind_and_listen(running_daemon: DaemonThread, containers: Containers) -> None:
    cid = run(containers, "cauditd_probe", "listen", "4444")
    bind = running_daemon.wait_for(in_container(cid, NetSyscallEvent, "bind", comm=PROBE))
    assert (bind.addr, bind.port, bind.ret) == ("127.0.0.1", 4444, 0)
    listen = running_daemon.wait_for(in_container(cid, NetSyscallEvent, "listen", comm=PROBE))
    assert (listen.fd, listen.addr, listen.port, listen.ret) == (bind.fd, "127.0.0.1", 4444, 0)


def test_dup2_of_a_socket_onto_stderr(running_daemon: DaemonThread, containers: Containers) -> None:
    cid = run(containers, "cauditd_probe", "dupsock")
    ev = running_daemon.wait_for(in_container(cid, SyscallEvent, "dup2", comm=PROBE))
    assert ev.args["newfd"] == 2 and ev.args["oldfd_is_socket"] == 1 and ev.ret == 2
    sock = running_daemon.wait_for(in_container(cid, SyscallEvent, "socket", comm=PROBE))
    assert sock.args == {"domain": 2, "type": 1, "protocol": 0}


def test_host_processes_are_not_reported(
    running_daemon: DaemonThread, containers: Containers
) -> None:
    marker = f"/tmp/cauditd-host-{uuid.uuid4().hex}"
    subprocess.run(["/bin/sh", "-c", f"echo x > {marker}; cat {marker}"], check=True)
    cid = run(containers, "true")
    running_daemon.wait_for(in_container(cid, ExecEvent, "execve"))  # the pipeline caught up
    host = [ev for ev in running_daemon.events if getattr(ev, "path", "") == marker]
    assert host == []
    assert all(not ev.container.is_host for ev in running_daemon.events)


def test_a_busy_host_process_costs_no_container_events(
    running_daemon: DaemonThread, containers: Containers
) -> None:
    lost_before = running_daemon.call(lambda: running_daemon.daemon.probes.poll_lost())
    lost_before = running_daemon.daemon.probes.lost_total
    flood = subprocess.Popen(
        ["python3", "-c", "import time\nend=time.time()+3\nwhile time.time()<end:\n"
         "  open('/etc/passwd').close()"]
    )  # fmt: skip
    try:
        script = "touch /tmp/m; for i in $(seq 200); do cat /tmp/m; done"
        cid = run(containers, "sh", "-c", script)
    finally:
        flood.wait()
    running_daemon.wait_for(in_container(cid, ExitEvent, "procexit"))
    opens = [
        ev for ev in running_daemon.events
        if in_container(cid, FileEvent, "openat", path="/tmp/m")(ev) and ev.flags & 0o3 == 0
    ]  # fmt: skip
    assert len(opens) == 200
    assert running_daemon.call(lambda: running_daemon.daemon.probes.poll_lost()) == 0
    assert running_daemon.daemon.probes.lost_total == lost_before
