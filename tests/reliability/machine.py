"""A systemd-nspawn machine whose PID 1 is systemd, to run the installed unit as a host would.

Its root is built (once, cached) by scripts/nspawn-root.sh from Debian packages; each boot gets a
throw-away overlay on it (`--volatile=overlay`). The machine shares the host's network namespace
and sees what eBPF work needs: the kernel headers (/lib/modules, /usr/src), tracefs, bpffs, the
host's cgroup2 tree (at HOST_CGROUP2) and the Docker socket. It is granted the capabilities the
unit's bounding set names, and the two syscalls nspawn's own filter withholds from a container
but a host's PID 1 has (bpf, perf_event_open). Commands run inside with nsenter.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

from tests.conftest import REPO

HOST_CGROUP2 = "/run/host-cgroup2"
SOURCE = "/src/cauditd"
WHEELS = "/wheels"
PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def build_root(timeout: float = 900) -> Path:
    """The cached Debian root (scripts/nspawn-root.sh builds it on first use)."""
    out = _script("nspawn-root.sh", timeout)
    return Path(out)


def wheelhouse(timeout: float = 600) -> Path:
    """Wheels for an offline `scripts/install.sh` inside the machine (scripts/wheelhouse.sh)."""
    return Path(_script("wheelhouse.sh", timeout))


def _script(name: str, timeout: float) -> str:
    result = subprocess.run([str(REPO / "scripts" / name)], capture_output=True, text=True,
                            timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"scripts/{name} failed:\n{result.stderr[-3000:]}")
    return result.stdout.strip().splitlines()[-1]


def cgroup2_mount() -> str:
    """The host's cgroup2 mount point (pure v2 or hybrid)."""
    from cauditd.containers.cgroups import find_cgroup2_root

    return str(find_cgroup2_root(""))


class Machine:
    """One booted machine; `stop()` powers it off (and kills it if it will not go)."""

    def __init__(self, root: Path, name: str, capabilities: Iterable[str], wheels: Path) -> None:
        self.name = name
        binds = [
            "--bind=/sys/kernel/tracing", "--bind=/sys/fs/bpf",
            "--bind-ro=/lib/modules", "--bind-ro=/usr/src",
            f"--bind-ro={cgroup2_mount()}:{HOST_CGROUP2}",
            f"--bind-ro={REPO}:{SOURCE}", f"--bind-ro={wheels}:{WHEELS}",
        ]
        docker_socket = Path("/run/docker.sock")
        if docker_socket.exists():
            binds.append(f"--bind={docker_socket}")
        self.command = [
            "systemd-nspawn", "--quiet", "--directory", str(root), "--volatile=overlay",
            "--boot", "--register=no", "--keep-unit", f"--machine={name}",
            "--console=passive", f"--capability={','.join(capabilities)}",
            "--system-call-filter=bpf perf_event_open", *binds,
        ]
        self.proc: subprocess.Popen[bytes] | None = None
        self.leader = 0
        self.output = Path(f"/tmp/{name}.nspawn.log")

    def start(self, timeout: float = 90) -> None:
        """Boot, and wait until systemd says the system is running."""
        with self.output.open("wb") as out:
            self.proc = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not self.leader:
            self.leader = self._child_of(self.proc.pid)
            self._check_alive(deadline)
            time.sleep(0.1)
        while True:
            state = self.run("systemctl", "is-system-running", check=False, timeout=10)
            if state.stdout.strip() in ("running", "degraded"):
                return
            self._check_alive(deadline)
            time.sleep(0.5)

    def _check_alive(self, deadline: float) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"systemd-nspawn exited {self.proc.returncode}: {self.log()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"machine {self.name} did not boot in time: {self.log()}")

    @staticmethod
    def _child_of(pid: int) -> int:
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            return 0
        return int(children[0]) if children else 0

    def log(self) -> str:
        return self.output.read_text(errors="replace")[-3000:] if self.output.exists() else ""

    def run(self, *command: str, check: bool = True, timeout: float = 60,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """A command inside the machine (all its namespaces), with a clean environment."""
        variables = [f"{k}={v}" for k, v in {"PATH": PATH, "HOME": "/root", **(env or {})}.items()]
        result = subprocess.run(
            ["nsenter", "--target", str(self.leader), "--all", "env", "-i", *variables, *command],
            capture_output=True, text=True, timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(command)} exited {result.returncode} in {self.name}:\n"
                f"{result.stdout[-2000:]}{result.stderr[-2000:]}"
            )
        return result

    def systemctl(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return self.run("systemctl", *args, timeout=timeout)

    def show(self, unit: str, *properties: str) -> dict[str, str]:
        """`systemctl show -p ...` as a dict."""
        out = self.run("systemctl", "show", unit, *(f"--property={p}" for p in properties))
        return dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)

    def journal(self, unit: str) -> str:
        return self.run("journalctl", "--unit", unit, "--no-pager", "--output=cat",
                        check=False).stdout

    def read(self, path: str) -> str:
        return self.run("cat", path).stdout

    def write(self, path: str, text: str) -> None:
        subprocess.run(
            ["nsenter", "--target", str(self.leader), "--all", "tee", path],
            input=text, capture_output=True, text=True, check=True, timeout=30,
        )

    def stop(self, timeout: float = 60) -> None:
        """Power off (systemd-nspawn turns SIGTERM into a clean shutdown), else kill."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.leader, signal.SIGKILL)  # the PID namespace's init: takes all with it
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        self.output.unlink(missing_ok=True)
