"""`cauditctl fleet` run as a program, as a user runs it, off the test's event loop."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from typing import Any

CAUDITCTL = [sys.executable, "-m", "cauditd.ctl"]


class Fleetctl:
    """`cauditctl --json fleet --server URL... COMMAND` against one test cluster."""

    def __init__(self, urls: list[str], *options: str) -> None:
        self.servers = [*(arg for url in urls for arg in ("--server", url)), *options]

    async def run(self, *args: str, json_output: bool = True,
                  timeout: float = 60) -> subprocess.CompletedProcess[str]:
        cmd = [*CAUDITCTL, *(["--json"] if json_output else []), "fleet", *self.servers, *args]
        return await asyncio.to_thread(subprocess.run, cmd, capture_output=True, text=True,
                                       timeout=timeout)

    async def findings(self, *args: str) -> list[dict[str, Any]]:
        """JSON lines of `fleet findings ARGS`, newest first."""
        done = await self.run("findings", *args)
        assert done.returncode == 0, done.stdout + done.stderr
        return [json.loads(line) for line in done.stdout.splitlines()]

    async def document(self, *args: str) -> Any:
        done = await self.run(*args)
        assert done.returncode == 0, done.stdout + done.stderr
        return json.loads(done.stdout)
