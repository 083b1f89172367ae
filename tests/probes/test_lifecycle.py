"""Process lifecycle held in the kernel (probes/lifecycle.h), with the shipped rules loaded.

No shipped rule matches forks or exits, so a fork's record waits in the kernel until the
process it made sends a record of its own: busybox httpd's per-request children that only
serve a file cost no record, while one that opens /etc/shadow (through a symlink in the
document root) or runs a CGI script is sent with its fork first, and its parent chain is the
one it would have had with every fork sent. A double fork whose middle process is gone before
the grandchild acts keeps the chain through it.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from cauditd.events import ExecEvent, ExitEvent, FileEvent, ForkEvent, ProcessInfo
from tests.conftest import (
    Containers,
    DaemonThread,
    daemon_config,
    docker_problem,
    ebpf_problem,
    unavailable,
)

pytestmark = pytest.mark.usefixtures("ebpf", "docker")

PLAIN_REQUESTS = 20
# The document root: a page, a symlink to /etc/shadow, and a CGI script whose background
# subshell forks again and leaves: the grandchild opens /etc/shadow after its parent exited.
SERVER = (
    "mkdir -p /www/cgi-bin && echo hello > /www/index.html && ln -s /etc/shadow /www/s && "
    "printf '#!/bin/sh\\necho Content-Type: text/plain; echo;"
    " ( ( i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; : < /etc/shadow ) & ); echo ok\\n'"
    " > /www/cgi-bin/x && chmod +x /www/cgi-bin/x && exec httpd -f -p 8080 -h /www"
)


@pytest.fixture(scope="module")
def shipped_rules_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonThread]:
    """A daemon with the shipped rules (their needed syscalls and kernel filters)."""
    for problem in (ebpf_problem(), docker_problem()):
        if problem:
            unavailable(problem)
    runner = DaemonThread(daemon_config(tmp_path_factory.mktemp("daemon"), all_syscalls=False))
    runner.start()
    try:
        yield runner
    finally:
        runner.stop()


def of(cid: str, kind: type, **fields: Any) -> Any:
    def match(ev: Any) -> bool:
        return (isinstance(ev, kind) and ev.container.id == cid
                and all(getattr(ev, k) == v for k, v in fields.items()))

    return match


def opens_shadow(cid: str, ev: Any) -> bool:
    return of(cid, FileEvent, path="/etc/shadow")(ev) and ev.type.startswith("open")


def chain(proc: ProcessInfo | None) -> list[int]:
    pids = []
    while proc is not None and len(pids) < 10:
        pids.append(proc.pid)
        proc = proc.parent
    return pids


def test_a_forking_servers_children_cost_no_record_unless_they_act(
    shipped_rules_daemon: DaemonThread, containers: Containers
) -> None:
    daemon = shipped_rules_daemon
    name = f"cauditd-t-{uuid.uuid4().hex[:10]}"
    started = containers.run("sh", "-c", SERVER, name=name, detach=True,
                             options=("--network", "none"))
    assert started.returncode == 0, started.stderr
    cid = containers.inspect_id(name)
    httpd = daemon.wait_for(of(cid, ExecEvent, argv=("httpd", "-f", "-p", "8080", "-h", "/www")))

    def get(path: str, times: int = 1) -> str:
        loop = f"for i in $(seq {times}); do wget -q -O - http://127.0.0.1:8080{path}; done"
        done = subprocess.run(["docker", "exec", name, "sh", "-c", loop + "; echo END"],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and done.stdout.endswith("END\n"), done.stderr
        return done.stdout

    assert get("/index.html", PLAIN_REQUESTS).count("hello") == PLAIN_REQUESTS
    time.sleep(1)  # the daemon drains what the requests sent
    since = [ev for ev in daemon.events if ev.ts_ns > httpd.ts_ns]  # not the setup's forks
    forks = [ev for ev in since if of(cid, ForkEvent, pid=httpd.pid)(ev)]
    assert forks == [], "children that served a page were sent"
    exited = {ev.pid for ev in since if of(cid, ExitEvent)(ev)}
    execed = {ev.pid for ev in since if of(cid, ExecEvent)(ev)}
    assert exited <= execed, "exits of children that served a page were sent"

    # A child that opens /etc/shadow (the symlink it serves): sent with its fork first.
    get("/s")
    opened = daemon.wait_for(lambda ev: opens_shadow(cid, ev) and ev.process.ppid == httpd.pid)
    fork = daemon.wait_for(of(cid, ForkEvent, pid=httpd.pid, child_pid=opened.pid))
    assert daemon.events.index(fork) < daemon.events.index(opened)
    assert chain(opened.process)[:2] == [opened.pid, httpd.pid]
    assert opened.process.parent is httpd.process
    assert opened.process.start_ns == fork.ts_ns > httpd.process.start_ns

    # A CGI script: httpd -> child -> child, exec x -> subshell (exits) -> subshell opens
    # /etc/shadow: two held forks sent before the exec, two before the open, then the exit.
    assert "ok" in get("/cgi-bin/x")
    cgi = daemon.wait_for(of(cid, ExecEvent, argv=("x",)))  # run from its directory
    connection, server = chain(cgi.process)[1:3]  # httpd forks again for a CGI script
    assert server == httpd.pid and connection != httpd.pid
    late = daemon.wait_for(lambda ev: opens_shadow(cid, ev) and ev.ts_ns > cgi.ts_ns)
    ancestors = chain(late.process)
    assert ancestors[2:5] == [cgi.pid, connection, httpd.pid], ancestors
    middle = ancestors[1]
    gone = daemon.wait_for(of(cid, ExitEvent, pid=middle))
    middle_fork = daemon.wait_for(of(cid, ForkEvent, child_pid=middle))
    assert daemon.events.index(middle_fork) < daemon.events.index(gone)
