"""`cauditd run` as a subprocess for e2e tests (its log, its API, and a clean kill at the end),
and a local webhook receiver playing the chat service."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

CAUDITD = [sys.executable, "-m", "cauditd.cli"]


def write_config(path: Path, state_dir: Path, extra: str = "") -> Path:
    """A daemon config: state in `state_dir`, API on a free loopback port, debug log."""
    path.write_text(
        f'[daemon]\nstate_dir = "{state_dir}"\nlog_level = "debug"\n'
        '[api]\nlisten = "127.0.0.1:0"\n' + extra
    )
    return path


class DaemonProcess:
    """`cauditd run --config PATH` with its stderr collected line by line."""

    def __init__(self, config: Path, env: dict[str, str] | None = None,
                 wrapper: Sequence[str] = ()) -> None:
        """`wrapper`: a command prefix the daemon runs under (e.g. a confinement)."""
        self.proc = subprocess.Popen(
            [*wrapper, *CAUDITD, "run", "--config", str(config)],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "PYTHONFAULTHANDLER": "1", **(env or {})},
        )
        self.lines: list[str] = []
        self.api_url = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def wait_ready(self, timeout: float = 60) -> DaemonProcess:
        line = self.wait_for(r"cauditd ready", timeout)
        match = re.search(r"API on (\S+):(\d+)", line)
        if match:
            self.api_url = f"http://{match.group(1)}:{match.group(2)}"
        return self

    def wait_for(self, pattern: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if regex.search(line):
                    return line
            if self.proc.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.05)
        tail = "\n".join(line for line in self.lines[-60:] if " DEBUG " not in line)
        raise AssertionError(f"no log line matching {pattern!r}; log:\n{tail}")

    def get(self, path: str, timeout: float = 10) -> Any:
        with urllib.request.urlopen(self.api_url + path, timeout=timeout) as resp:
            return json.load(resp)

    def post(self, path: str, timeout: float = 30) -> tuple[int, Any]:
        request = urllib.request.Request(self.api_url + path, method="POST", data=b"")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as resp:
                return resp.status, json.load(resp)
        except urllib.error.HTTPError as exc:
            return exc.code, json.load(exc)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGABRT)  # faulthandler prints every thread's stack
            self.proc.wait(timeout=10)
            self._reader.join(timeout=5)
            tail = "\n".join([line for line in self.lines if "pyroute2" not in line][-80:])
            raise AssertionError(
                f"cauditd did not exit {timeout}s after {sig!r}; log and stacks:\n{tail}"
            ) from None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class WebhookReceiver:
    """A webhook endpoint on 127.0.0.1 recording each JSON body and its delivery headers;
    `delay_s` makes it a slow service (each POST waits that long before its 200)."""

    def __init__(self, delay_s: float = 0.0) -> None:
        received: list[tuple[dict[str, str], Any]] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                time.sleep(delay_s)
                received.append((dict(self.headers), json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait(self, predicate: Any, timeout: float = 20) -> tuple[dict[str, str], Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for item in list(self.received):
                if predicate(item[1]):
                    return item
            time.sleep(0.1)
        raise AssertionError(f"nothing matching arrived; got {len(self.received)} posts")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
