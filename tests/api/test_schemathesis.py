"""Schemathesis, all checks, against /openapi.json of a live server; and proof it sees a 5xx."""

from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import ADMIN_TOKEN, ApiFactory
from tests.fakes import FULL_ID_B, FakeStats, make_finding

STREAM = "/v1/findings/stream"


def schemathesis_cli() -> str:
    found = Path(sys.executable).with_name("schemathesis")
    if found.exists():
        return str(found)
    return shutil.which("schemathesis") or pytest.fail("schemathesis is not installed")


async def schemathesis(url: str, cwd: Path, *args: str) -> tuple[int, str]:
    """Run `schemathesis run URL/openapi.json --checks all` with a bounded number of examples."""
    proc = await asyncio.create_subprocess_exec(
        schemathesis_cli(), "run", f"{url}/openapi.json", "--checks", "all",
        "--workers", "2", "--request-timeout", "5", "--seed", "1", "--no-color", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=cwd,
    )
    out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


@pytest.mark.slow
async def test_schemathesis_all_checks_with_tokens(make_api: ApiFactory, tmp_path: Path) -> None:
    """Positive and negative data, auth ignored or not, status codes, content types, schemas."""
    api = await make_api(tokens=True)
    for i in range(30):
        api.ctx.store.add(make_finding(f"rule {i % 4}", full_id=FULL_ID_B if i % 3 else "host"))
    await api.ctx.store.flush()
    code, text = await schemathesis(
        api.url, tmp_path, "--max-examples", "30", "-H", f"Authorization: Bearer {ADMIN_TOKEN}",
        "--exclude-path", STREAM,  # an accepted request is an endless stream: tested below
    )
    assert code == 0, text[-6000:]
    assert "generated" in text and " failed" not in text


@pytest.mark.slow
async def test_schemathesis_all_checks_without_tokens(make_api: ApiFactory, tmp_path: Path) -> None:
    """Without tokens the served document has no auth, and the server agrees."""
    api = await make_api()
    code, text = await schemathesis(api.url, tmp_path, "--max-examples", "15",
                                    "--exclude-path", STREAM)
    assert code == 0, text[-6000:]


@pytest.mark.slow
async def test_schemathesis_stream_rejects_every_bad_request(make_api: ApiFactory,
                                                             tmp_path: Path) -> None:
    """Negative data only: each answer is a JSON 400 at once (an accepted one would time out)."""
    api = await make_api()
    code, text = await schemathesis(api.url, tmp_path, "--mode", "negative",
                                    "--max-examples", "30", "--include-path", STREAM)
    assert code == 0, text[-6000:]
    assert "generated" in text


class BrokenStats(FakeStats):
    """A stats view with a bug."""

    def stats(self) -> dict[str, Any]:
        raise RuntimeError("a bug in the stats view")


@pytest.mark.slow
async def test_schemathesis_run_reports_a_server_error(make_api: ApiFactory,
                                                       tmp_path: Path) -> None:
    """The same run fails when a route answers 500: the harness can catch what it is there for."""
    api = await make_api()
    api.ctx.stats = BrokenStats()
    code, text = await schemathesis(api.url, tmp_path, "--max-examples", "5",
                                    "--include-path", "/v1/stats")
    assert code != 0
    assert "Server error" in text, text[-3000:]
