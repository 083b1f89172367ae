"""The exec sink: run a program with the Falco-shaped JSON on stdin (PagerDuty CLIs, tickets).

Exit status 0 is delivered; any other status or a timeout is retried; a program that cannot be
found is a permanent failure. The environment carries CAUDITD_IDEMPOTENCY_KEY and CAUDITD_SINK.
The program runs without the daemon's capabilities and with no_new_privs (cauditd.dropcaps).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys

import aiohttp

from cauditd import text
from cauditd.alerts.sinks.base import DELIVERED, Delivery, Outcome, Sink
from cauditd.config import SinkConfig

# Drops every capability, sets no_new_privs, then execs the command (same pid: kill and wait work).
TRAMPOLINE = (sys.executable, "-m", "cauditd.dropcaps")


class ExecSink(Sink):
    """Runs `command` once per message."""

    def __init__(self, config: SinkConfig) -> None:
        super().__init__(config)
        if not config.command:
            raise ValueError(f"sink {config.name}: kind exec needs a command")
        self.command = list(config.command)

    async def send(self, delivery: Delivery, session: aiohttp.ClientSession) -> Outcome:
        data = text.json_dumps(delivery.message.document, ensure_ascii=False).encode() + b"\n"
        env = {**os.environ, "CAUDITD_IDEMPOTENCY_KEY": delivery.key, "CAUDITD_SINK": self.name}
        if shutil.which(self.command[0]) is None:
            return Outcome(ok=False, error=f"cannot run {self.command[0]}: not an executable")
        try:
            proc = await asyncio.create_subprocess_exec(
                *TRAMPOLINE, *self.command, stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=env,
            )  # fmt: skip
        except OSError as exc:
            return Outcome(ok=False, error=f"cannot run {self.command[0]}: {exc.strerror}")
        try:
            _, stderr = await asyncio.wait_for(proc.communicate(data), self.config.timeout_s)
        except TimeoutError:
            return Outcome(
                ok=False,
                retry=True,
                error=f"timeout: {self.command[0]} ran over {self.config.timeout_s:g}s",
            )
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if proc.returncode == 0:
            return DELIVERED
        tail = stderr.decode(errors="replace").strip()[-200:]
        return Outcome(ok=False, retry=True, error=f"exit {proc.returncode}: {tail}".rstrip(": "))
