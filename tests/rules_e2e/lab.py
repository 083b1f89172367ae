"""A lab for rule e2e tests: one in-process Daemon with the shipped rules, scenario containers.

A Scenario is a container's command (plus `docker exec`s into it); the Lab runs scenarios a few
at a time, waits until the daemon has handled the container's last event (its init's exit), and
reads the container's findings back through the daemon's HTTP API.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cauditd.events import Event, ExecEvent, ExitEvent, FileEvent, NetSyscallEvent, SyscallEvent
from cauditd.rules import RuleSet
from cauditd.rules.fields import OPEN_TYPES
from tests.conftest import (
    TEST_IMAGE,
    Containers,
    DaemonThread,
    daemon_config,
    docker_problem,
    ebpf_problem,
    unavailable,
)

PARALLEL = 2
ATTEMPTS = 3
Witness = Callable[[Event], bool]


@dataclass(frozen=True)
class Scenario:
    """A container: its command, docker options, network, and commands exec'd into it once up.

    With `execs` the command must keep the container alive (e.g. `sleep 30`); the container is
    killed after the last exec.
    """

    command: tuple[str, ...]
    options: tuple[str, ...] = ()
    execs: tuple[tuple[str, ...], ...] = ()
    network: str = "none"


@dataclass(frozen=True)
class Ran:
    """A scenario's container after it ran: its name and full id, and what it printed."""

    name: str
    container_id: str
    stdout: str = ""


def sh(script: str, *, options: tuple[str, ...] = ()) -> Scenario:
    """A container running `sh -c SCRIPT; true` (the `; true` keeps sh from exec'ing the last
    command in place, so every /full/path command is a real fork + exec with parent sh)."""
    return Scenario(("sh", "-c", f"{script}; true"), options)


def execd(*argv: str) -> Witness:
    """An exec of exactly this argv."""
    return lambda ev: isinstance(ev, ExecEvent) and ev.argv == argv


def syscall(evt_type: str, **args: Any) -> Witness:
    """A syscall of this type whose decoded arguments include `args`."""
    return lambda ev: (
        isinstance(ev, SyscallEvent)
        and ev.type == evt_type
        and all(ev.args.get(k) == v for k, v in args.items())
    )


def file_op(types: Iterable[str], path: str) -> Witness:
    """A file syscall of one of `types` on `path`."""
    wanted = frozenset(types)
    return lambda ev: isinstance(ev, FileEvent) and ev.type in wanted and ev.path == path


@dataclass(frozen=True)
class Opened:
    """An open of `path` with `modes` (cauditd.rules.prefilter READ / WRITE), made by the exec
    of `argv`; `resolved`, the file the kernel opened when that is not `path` (a symlink or
    /proc's magic links), is what the event and the kernel's filter see.

    The kernel drops the opens, connects and sockets no loaded rule can match, so such a call
    is never seen; for those, `Lab.saw` takes the filter's verdict and the exec of `argv` instead
    (tests/probes/test_kernel_filters.py checks the kernel against that verdict).
    """

    path: str
    modes: int
    argv: tuple[str, ...]
    resolved: str = ""

    def __call__(self, ev: Event) -> bool:
        return isinstance(ev, FileEvent) and ev.type in OPEN_TYPES \
            and ev.path == (self.resolved or self.path)

    def dropped_by(self, ruleset: RuleSet) -> bool:
        return not ruleset.open_filter().passes(self.resolved or self.path, self.modes)


@dataclass(frozen=True)
class Connected:
    """A connect to an IPv4 `addr`:`port` made by the exec of `argv` (see Opened)."""

    addr: str
    port: int
    argv: tuple[str, ...]

    def __call__(self, ev: Event) -> bool:
        return isinstance(ev, NetSyscallEvent) and ev.type == "connect" \
            and (ev.addr, ev.port) == (self.addr, self.port)

    def dropped_by(self, ruleset: RuleSet) -> bool:
        return not ruleset.connect_filter().passes(2, self.addr, self.port)


@dataclass(frozen=True)
class DupOfFile:
    """A dup2 of a file (not a socket) onto `newfd`, made by the exec of `argv` (see Opened)."""

    newfd: int
    argv: tuple[str, ...]

    def __call__(self, ev: Event) -> bool:
        return isinstance(ev, SyscallEvent) and ev.type == "dup2" \
            and ev.args.get("newfd") == self.newfd

    def dropped_by(self, ruleset: RuleSet) -> bool:
        return ruleset.dup_filter().sockets_only


@dataclass(frozen=True)
class Socketed:
    """A socket() of `domain` and `type` that returned `fd`, made by the exec of `argv` (see
    Opened)."""

    domain: int
    type: int
    argv: tuple[str, ...]
    fd: int = 3

    def __call__(self, ev: Event) -> bool:
        return isinstance(ev, SyscallEvent) and ev.type == "socket" \
            and (ev.args.get("domain"), ev.args.get("type")) == (self.domain, self.type)

    def dropped_by(self, ruleset: RuleSet) -> bool:
        return not ruleset.socket_filter().passes(self.domain, self.fd)


class Lab:
    """Runs scenarios (each once), and reads their containers' events and findings."""

    def __init__(self, daemon: DaemonThread, containers: Containers) -> None:
        self.daemon = daemon
        self.containers = containers
        self._ran: dict[Scenario, Ran] = {}

    def prepare(self, scenarios: Iterable[Scenario]) -> None:
        """Run every scenario not yet run, PARALLEL at a time, then commit their findings."""
        todo = [s for s in dict.fromkeys(scenarios) if s not in self._ran]
        with ThreadPoolExecutor(PARALLEL) as pool:
            for scenario, ran in zip(todo, pool.map(self._run, todo), strict=True):
                self._ran[scenario] = ran
        self.flush()

    def ran(self, scenario: Scenario) -> Ran:
        """The container of `scenario`, run now if `prepare` did not."""
        if scenario not in self._ran:
            self.prepare([scenario])
        return self._ran[scenario]

    def _run(self, scenario: Scenario) -> Ran:
        """Run once more (up to ATTEMPTS) when the probes lost events meanwhile: other work on
        the machine can fill the ring buffer, and a lost event is not the rule's failure."""
        for attempt in range(1, ATTEMPTS + 1):
            lost_before = self.lost()
            try:
                ran = self._run_once(scenario)
            except AssertionError:
                if attempt == ATTEMPTS:
                    raise
                continue
            if self.lost() == lost_before:
                break
        return ran

    def lost(self) -> int:
        return int(self.daemon.daemon.probes.lost_total)

    def _run_once(self, scenario: Scenario) -> Ran:
        name = f"cauditd-t-{uuid.uuid4().hex[:10]}"
        options = ("--network", scenario.network, *scenario.options)
        result = self.containers.run(
            *scenario.command, name=name, options=options, detach=bool(scenario.execs)
        )
        assert result.returncode == 0 or not scenario.execs, result.stderr
        for argv in scenario.execs:
            subprocess.run(["docker", "exec", name, *argv], capture_output=True, timeout=60)
        if scenario.execs:
            subprocess.run(["docker", "kill", name], capture_output=True, timeout=60)
        ran = Ran(name, self.containers.inspect_id(name), result.stdout)
        self.settle(ran)
        return ran

    def settle(self, ran: Ran) -> None:
        """Wait until the daemon handled the exit of the container's first process (its last)."""

        def init_exit(ev: Event) -> bool:
            return (
                isinstance(ev, ExitEvent)
                and ev.container.id == ran.container_id
                and ev.pid == ev.container.pid
            )

        self.daemon.wait_for(init_exit, timeout=30)

    def flush(self) -> None:
        """Return once every finding so far is committed (and so visible to the API)."""
        store = self.daemon.daemon.store
        asyncio.run_coroutine_threadsafe(store.flush(), self.daemon.loop).result(timeout=30)

    def events(self, ran: Ran) -> list[Event]:
        return [ev for ev in list(self.daemon.events) if ev.container.id == ran.container_id]

    def saw(self, ran: Ran, witness: Witness) -> bool:
        ruleset = self.daemon.daemon.detector.engine.ruleset
        if isinstance(witness, Opened | Connected | DupOfFile | Socketed) \
                and witness.dropped_by(ruleset):
            return self.saw(ran, execd(*witness.argv))
        return any(witness(ev) for ev in self.events(ran))

    def findings(self, ran: Ran, **params: str) -> list[dict[str, Any]]:
        """The container's findings from GET /v1/findings (`params`: rule, min_priority, ...)."""
        api = self.daemon.daemon.api
        assert api is not None
        query = urllib.parse.urlencode({"container": ran.container_id, "limit": "500", **params})
        url = f"http://{api.host}:{api.port}/v1/findings?{query}"
        with urllib.request.urlopen(url, timeout=10) as resp:
            findings: list[dict[str, Any]] = json.load(resp)["findings"]
        return findings

    def fired(self, ran: Ran, rule: str) -> list[dict[str, Any]]:
        """`rule`'s findings for the container, asserted there and attributed to it."""
        found = self.findings(ran, rule=rule)
        assert found, self.explain(ran)
        for finding in found:
            container = finding["container"]
            assert (container["full_id"], container["name"], container["image"]) == (
                ran.container_id, ran.name, TEST_IMAGE), self.explain(ran)
        return found

    def assert_quiet(self, ran: Ran, witness: Witness, rule: str) -> None:
        """The look-alike happened (`witness` saw it) and `rule` did not fire."""
        assert self.saw(ran, witness), f"the look-alike did not happen:\n{self.explain(ran)}"
        assert self.findings(ran, rule=rule) == [], self.explain(ran)

    def explain(self, ran: Ran) -> str:
        """The container's events and findings in a few lines, for a failing assert."""
        lines = [f"container {ran.name} ({ran.container_id[:12]}):"]
        own = [ev for ev in self.events(ran) if not getattr(ev, "comm", "").startswith("runc:[")]
        for ev in own[:60]:  # the container's own processes, not the runtime's set-up
            detail = getattr(ev, "argv", None) or getattr(ev, "path", "") or getattr(ev, "args", "")
            lines.append(f"  {ev.type} pid={getattr(ev, 'pid', '')} {detail}")
        lines += [f"  finding: {f['rule']}: {f['output']}" for f in self.findings(ran)]
        return "\n".join(lines)


@contextlib.contextmanager
def running_lab(state_dir: Path, scenarios: Iterable[Scenario]) -> Iterator[Lab]:
    """A Lab whose daemon (shipped rules, the kernel's filters, as in production) runs for the
    block, with `scenarios` already run; skips the test when eBPF or Docker is not there."""
    for problem in (ebpf_problem(), docker_problem()):
        if problem:
            unavailable(problem)
    daemon = DaemonThread(daemon_config(state_dir, all_syscalls=False))
    daemon.start()
    box = Containers()
    try:
        the_lab = Lab(daemon, box)
        the_lab.prepare(scenarios)
        yield the_lab
    finally:
        box.remove_all()
        daemon.stop()
