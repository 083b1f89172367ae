"""What a container chose never breaks the API's output: every body is strict UTF-8 JSON with
no lone surrogates (strict parsers such as Rust's serde_json refuse them), metric labels stay
bounded whatever the client sends, and /readyz says when findings are not reaching the disk."""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from cauditd import metrics
from tests.api.conftest import Api, ApiFactory
from tests.api.test_stream import next_finding
from tests.fakes import make_finding

UNDECODABLE = "/tmp/\udcff\udcfe"  # the bytes ff fe, as the process table keeps them


def strict_json(raw: bytes) -> Any:
    """Parse as a strict parser would: UTF-8 without errors, no lone surrogate anywhere."""
    doc = json.loads(raw.decode("utf-8"))
    json.dumps(doc, ensure_ascii=False).encode("utf-8")  # raises on a lone surrogate
    return doc


async def test_undecodable_bytes_come_out_as_escapes_in_strict_json(
    make_api: ApiFactory,
) -> None:
    api = await make_api()
    finding = make_finding(output=f"exec of {UNDECODABLE}")
    finding.output_fields["proc.exe"] = UNDECODABLE
    async with api.session.get(api.url + "/v1/findings/stream") as stream:
        api.ctx.store.add(finding)
        event = await next_finding(stream)
    assert event.data is not None and event.data["output"] == "exec of /tmp/\\xff\\xfe"
    await api.ctx.store.flush()
    async with api.session.get(api.url + "/v1/findings") as resp:
        doc = strict_json(await resp.read())
    assert doc["findings"][0]["output_fields"]["proc.exe"] == "/tmp/\\xff\\xfe"
    async with api.session.get(api.url + f"/v1/findings/{finding.id}") as resp:
        assert strict_json(await resp.read())["output"] == "exec of /tmp/\\xff\\xfe"


async def test_request_methods_never_become_new_metric_labels(api: Api) -> None:
    unusual = ["PROPFIND", "MKCOL", "LOCK", "UNLOCK", "SEARCH", "PURGE"]  # llhttp knows ~40
    for method in unusual:
        async with api.session.request(method, api.url + "/healthz") as resp:
            await resp.read()
    labels = {s.labels["method"] for m in metrics.REGISTRY.collect()
              if m.name == "cauditd_api_requests" for s in m.samples}
    assert labels.isdisjoint(unusual) and "other" in labels


async def test_readyz_is_degraded_while_the_state_dir_refuses_writes(api: Api) -> None:
    outage = api.ctx.store.outage
    outage.since_ns, outage.error = 1, "database or disk is full"
    try:
        status, body = await api.get("/readyz")
    finally:
        outage.since_ns, outage.error = 0, ""
    assert status == 503 and body["error"] == "degraded" and "disk is full" in body["detail"]
    assert await api.get("/readyz") == (200, {"status": "ready"})


async def test_a_hostile_query_parameter_gets_a_json_error(api: Api) -> None:
    async with aiohttp.ClientSession() as session:
        url = api.url + "/v1/findings?container=web&limit=%FF%FE%1B[31m"
        async with session.get(url) as resp:
            assert resp.status == 400
            assert "limit" in strict_json(await resp.read())["error"]
