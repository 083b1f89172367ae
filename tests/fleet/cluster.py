"""Real nats-server processes on loopback for tests and benchmarks: one server, or a JetStream
cluster of three whose nodes can be killed and restarted (their stores survive in a temp dir).
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

NATS_SERVER = "nats-server"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def nats_server_problem() -> str | None:
    if shutil.which(NATS_SERVER) is None:
        return "nats-server is not installed (scripts/bootstrap.sh --test installs it)"
    return None


@dataclass
class Node:
    """One nats-server: client port, cluster port, store directory, its process when running."""

    name: str
    port: int
    cluster_port: int
    store: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"


@dataclass
class Cluster:
    """`size` JetStream servers on 127.0.0.1 (a cluster when size > 1)."""

    root: Path
    size: int = 3
    config: str = ""  # nats-server configuration (TLS, authorization) for every node
    scheme: str = "nats"
    nodes: list[Node] = field(default_factory=list)

    def __post_init__(self) -> None:
        for i in range(self.size):
            self.nodes.append(Node(f"n{i + 1}", free_port(), free_port(),
                                   self.root / f"n{i + 1}", self.root / f"n{i + 1}.log"))

    @property
    def urls(self) -> list[str]:
        return [f"{self.scheme}://127.0.0.1:{node.port}" for node in self.nodes]

    def command(self, node: Node) -> list[str]:
        cmd = [NATS_SERVER, "-js", "-a", "127.0.0.1", "-p", str(node.port), "-n", node.name,
               "-sd", str(node.store)]
        if self.config:
            path = self.root / "server.conf"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(self.config)
            cmd += ["-c", str(path)]
        if self.size > 1:
            routes = ",".join(f"nats://127.0.0.1:{n.cluster_port}" for n in self.nodes
                              if n is not node)
            cmd += ["--cluster_name", "cauditd-test", "--cluster",
                    f"nats://127.0.0.1:{node.cluster_port}", "--routes", routes]
        return cmd

    def start(self, node: Node | None = None) -> None:
        for target in [node] if node else self.nodes:
            if target.proc is not None and target.proc.poll() is None:
                continue
            target.store.mkdir(parents=True, exist_ok=True)
            with target.log.open("ab") as log:
                target.proc = subprocess.Popen(self.command(target), stdout=log,
                                               stderr=subprocess.STDOUT)
        for target in [node] if node else self.nodes:
            wait_port(target.port)

    def kill(self, node: Node | None = None) -> None:
        """SIGKILL: the broker dies as a crashed host would."""
        for target in [node] if node else self.nodes:
            if target.proc is not None and target.proc.poll() is None:
                target.proc.send_signal(signal.SIGKILL)
                target.proc.wait(timeout=10)
            target.proc = None

    def stop(self) -> None:
        for node in self.nodes:
            if node.proc is not None and node.proc.poll() is None:
                node.proc.terminate()
                try:
                    node.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    node.proc.kill()
                    node.proc.wait()
            node.proc = None

    def logs(self) -> str:
        return "\n".join(f"--- {n.name}\n" + n.log.read_text(errors="replace")[-3000:]
                         for n in self.nodes if n.log.exists())


def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nats-server did not listen on 127.0.0.1:{port} in {timeout}s")
