"""A private Docker engine for tests that stop and start it: its own data root, exec root (and
so its own containerd), pidfile and socket, no bridge, no iptables, no forwarding, and its own
network namespace. The host's engine, which other tests share, is never touched.

The network namespace matters: a dockerd started with --bridge=none deletes the interface named
docker0 in its netns at start, which in the host's netns is the shared engine's bridge (seen
here: every `docker run` on the default network then failed with "could not find bridge
docker0"). Entered with nsenter --net only, so it keeps the host's mounts (cgroups).
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

from tests.conftest import TEST_IMAGE

START_TIMEOUT_S = 60


class PrivateDockerd:
    """`start()`/`stop()` the engine; `docker(...)` runs the CLI against it."""

    def __init__(self) -> None:
        self.root = Path(f"/tmp/cdt-{uuid.uuid4().hex[:8]}")  # short: unix socket paths
        self.socket = self.root / "docker.sock"
        self.pidfile = self.root / "docker.pid"
        self.proc: subprocess.Popen[bytes] | None = None
        self.root.mkdir()
        self.netns = f"cdt-{self.root.name[4:]}"
        subprocess.run(["ip", "netns", "add", self.netns], check=True, capture_output=True)

    def start(self) -> None:
        log = (self.root / "dockerd.log").open("ab")
        self.proc = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{self.netns}",
             "dockerd", "--data-root", str(self.root / "data"),
             "--exec-root", str(self.root / "exec"), "--pidfile", str(self.pidfile),
             "-H", f"unix://{self.socket}", "--bridge=none", "--iptables=false",
             "--ip6tables=false", "--ip-forward=false", "--live-restore"],
            stdout=log, stderr=log)
        deadline = time.monotonic() + START_TIMEOUT_S
        while subprocess.run(["docker", "-H", f"unix://{self.socket}", "info"],
                             capture_output=True).returncode != 0:
            assert self.proc.poll() is None, self.log_tail()
            assert time.monotonic() < deadline, "private dockerd did not answer\n" + \
                self.log_tail()
            time.sleep(0.3)

    def stop(self) -> None:
        """SIGTERM, as systemd stops it (with live-restore its containers keep running)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def docker(self, *args: str, check: bool = True) -> str:
        done = subprocess.run(["docker", "-H", f"unix://{self.socket}", *args],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 or not check, done.stderr
        return done.stdout.strip()

    def load_test_image(self) -> None:
        saved = subprocess.run(["docker", "save", TEST_IMAGE], capture_output=True,
                               check=True, timeout=120)
        subprocess.run(["docker", "-H", f"unix://{self.socket}", "load"], input=saved.stdout,
                       capture_output=True, check=True, timeout=120)

    def log_tail(self) -> str:
        path = self.root / "dockerd.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def destroy(self) -> None:
        """Remove its containers (starting it again if a test left it stopped: with
        live-restore they outlive it), stop it, unmount what it mounted, delete its directory."""
        if self.proc is None or self.proc.poll() is not None:
            with contextlib.suppress(AssertionError):  # never came up: nothing to remove
                self.start()
        if self.proc is not None and self.proc.poll() is None:
            ids = self.docker("ps", "-aq", check=False).split()
            if ids:
                self.docker("rm", "-f", *ids, check=False)
        self.stop()
        mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()
                  if line.split()[1].startswith(str(self.root))]
        for mount in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", "-l", mount], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)
