"""Schemathesis against /openapi.json of a live server: no 5xx, every response fits the document."""

from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path

import pytest

from tests.api.conftest import ApiFactory
from tests.fakes import FULL_ID_B, make_finding

CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
          "response_schema_conformance,response_headers_conformance")


def schemathesis_cli() -> str:
    found = Path(sys.executable).with_name("schemathesis")
    if found.exists():
        return str(found)
    return shutil.which("schemathesis") or pytest.fail("schemathesis is not installed")


@pytest.mark.slow
async def test_schemathesis_finds_nothing(make_api: ApiFactory, tmp_path: Path) -> None:
    api = await make_api()
    for i in range(30):
        api.ctx.store.add(make_finding(f"rule {i % 4}", full_id=FULL_ID_B if i % 3 else "host"))
    await api.ctx.store.flush()
    proc = await asyncio.create_subprocess_exec(
        schemathesis_cli(), "run", f"{api.url}/openapi.json",
        "--checks", CHECKS, "--max-examples", "40", "--workers", "1",
        "--phases", "examples,coverage,fuzzing",
        "--exclude-path", "/v1/findings/stream",  # an endless stream has no response to check
        "--request-timeout", "10", "--seed", "1",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=tmp_path,
    )
    out, _ = await proc.communicate()
    text = out.decode()
    assert proc.returncode == 0, text[-6000:]
    assert "Server error" not in text
