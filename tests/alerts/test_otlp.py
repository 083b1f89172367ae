"""The OTLP logs sink against a local aiohttp Collector that decodes every request with
opentelemetry-proto: attributes, severity, body; 503/429 with Retry-After; partial success."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from cauditd.alerts.sinks.otlp import SEVERITY
from cauditd.findings import ContainerRef, Priority
from tests.alerts.conftest import Daemon, eventually, finding, sink


@dataclass
class Collector:
    """An OTLP/HTTP logs receiver: decoded records, and scripted answers before a plain 200."""

    answers: list[tuple[int, dict[str, str], bytes]] = field(default_factory=list)
    records: list[tuple[dict[str, str], LogRecord, dict[str, Any]]] = field(default_factory=list)
    requests: int = 0
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        assert request.content_type == "application/x-protobuf"
        self.requests += 1
        if self.answers:
            status, headers, body = self.answers.pop(0)
            return web.Response(status=status, headers=headers, body=body)
        export = ExportLogsServiceRequest()
        export.ParseFromString(await request.read())
        for resource_logs in export.resource_logs:
            resource = {a.key: value(a.value) for a in resource_logs.resource.attributes}
            for scope_logs in resource_logs.scope_logs:
                assert scope_logs.scope.name == "cauditd"
                for record in scope_logs.log_records:
                    self.records.append((dict(request.headers), record, resource))
        return web.Response(body=ExportLogsServiceResponse().SerializeToString(),
                            content_type="application/x-protobuf")


def value(any_value: AnyValue) -> Any:
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return [value(v) for v in any_value.array_value.values]
    return getattr(any_value, kind)


def attributes(record: LogRecord) -> dict[str, Any]:
    return {a.key: value(a.value) for a in record.attributes}


@pytest.fixture
async def collector(aiohttp_server: Callable[..., Any]) -> AsyncIterator[Collector]:
    state = Collector()
    app = web.Application()
    app.router.add_post("/v1/logs", state.handle)
    server = await aiohttp_server(app, host="127.0.0.1")
    state.url = str(server.make_url("/v1/logs"))
    yield state


def partial(rejected: int, message: str) -> bytes:
    response = ExportLogsServiceResponse()
    response.partial_success.rejected_log_records = rejected
    response.partial_success.error_message = message
    return response.SerializeToString()


async def test_record_carries_semantic_attributes_severity_and_finding_json(
    collector: Collector, daemon_factory: Callable[..., Daemon]
) -> None:
    daemon = daemon_factory([sink("otel", "otlp", collector.url)])
    await daemon.start()
    k8s = ContainerRef(id="c0ffee000001", full_id="c0ffee" + "0" * 58, name="api",
                       image="registry.local/api:7", pod="api-5d8f", namespace="payments")
    made = finding(priority=Priority.CRITICAL, hostname="web-1", output="Shell <b>in</b> api")
    made.container = k8s
    (sent,) = daemon.add(made)
    (other,) = daemon.add(finding(priority=Priority.NOTICE, hostname="web-1"))
    await eventually(lambda: len(collector.records) == 2, "two records")

    headers, record, resource = collector.records[0]
    assert resource == {"service.name": "cauditd", "service.version": resource["service.version"],
                        "host.name": "web-1"}
    assert record.severity_number == SEVERITY[Priority.CRITICAL] == 21  # FATAL
    assert record.severity_text == "Critical"
    assert record.time_unix_nano == sent.time_ns
    body = json.loads(record.body.string_value)
    assert body["id"] == sent.id and body["rule"] == sent.rule
    assert body["output"] == "Shell <b>in</b> api"
    attrs = attributes(record)
    assert attrs == {
        "host.name": "web-1", "log.record.uid": headers["Idempotency-Key"],
        "container.id": k8s.full_id, "container.name": "api",
        "container.image.name": "registry.local/api:7", "k8s.pod.name": "api-5d8f",
        "k8s.namespace.name": "payments", "process.pid": 4242,
        "process.executable.path": "/bin/sh", "process.command_line": "sh -i",
        "cauditd.rule": sent.rule, "cauditd.priority": "Critical", "cauditd.source": "syscall",
        "cauditd.tags": ["container", "shell", "mitre_execution"], "cauditd.count": 1,
        "cauditd.finding.id": sent.id,
    }
    assert headers["Idempotency-Key"] == f"cauditd-web-1-{sent.id}-otel"
    _, second, _ = collector.records[1]
    assert second.severity_number == 10 and "k8s.pod.name" not in attributes(second)
    assert json.loads(second.body.string_value)["id"] == other.id


async def test_503_and_429_are_retried_after_their_retry_after(
    collector: Collector, daemon_factory: Callable[..., Daemon]
) -> None:
    collector.answers = [(503, {"Retry-After": "1"}, b"overloaded"),
                         (429, {"Retry-After": "0"}, b""), (502, {}, b"")]
    daemon = daemon_factory([sink("otel", "otlp", collector.url)])
    await daemon.start()
    daemon.add(finding(rule="A"), finding(rule="B"))
    # the collector holds a record before the daemon has read its answer: wait on the daemon
    await eventually(lambda: daemon.status("otel")["delivered"] == 2, "both delivered")
    assert len(collector.records) == 2
    assert [json.loads(r.body.string_value)["rule"] for _, r, _ in collector.records] == \
        ["A", "B"]
    status = daemon.status("otel")
    assert status["retries"] == 3 and status["delivered"] == 2 and status["failed"] == 0
    assert status["last_error"].startswith("HTTP 502")


async def test_partial_success_that_rejects_the_record_is_kept_as_failed(
    collector: Collector, daemon_factory: Callable[..., Daemon]
) -> None:
    collector.answers = [(200, {"Content-Type": "application/x-protobuf"},
                          partial(1, "body too large for index"))]
    daemon = daemon_factory([sink("otel", "otlp", collector.url)])
    await daemon.start()
    daemon.add(finding(rule="Rejected"), finding(rule="Accepted"))
    await eventually(lambda: daemon.status("otel")["delivered"] == 1, "the next delivered")
    assert len(collector.records) == 1
    status = daemon.status("otel")
    assert collector.requests == 2  # the rejected record was not sent again
    assert status["failed"] == 1 and status["delivered"] == 1
    assert status["last_error"] == \
        "partial success: 1 record(s) rejected: body too large for index"


async def test_partial_success_with_only_a_warning_is_delivered(
    collector: Collector, daemon_factory: Callable[..., Daemon]
) -> None:
    collector.answers = [(200, {}, partial(0, "attribute dropped"))]
    daemon = daemon_factory([sink("otel", "otlp", collector.url)])
    await daemon.start()
    daemon.add(finding(rule="Warned"))
    await eventually(lambda: daemon.status("otel")["delivered"] == 1, "delivered")
    assert daemon.status("otel")["failed"] == 0


async def test_400_with_a_status_body_is_permanent_and_says_why(
    collector: Collector, daemon_factory: Callable[..., Daemon]
) -> None:
    status_body = b"\x08\x03\x12\x13invalid log records"  # google.rpc.Status{3, "invalid ..."}
    collector.answers = [(400, {}, status_body)]
    daemon = daemon_factory([sink("otel", "otlp", collector.url)])
    await daemon.start()
    daemon.add(finding(rule="Bad"))
    await eventually(lambda: daemon.status("otel")["failed"] == 1, "kept as failed")
    assert daemon.status("otel")["last_error"] == "HTTP 400: invalid log records"
    assert daemon.status("otel")["retries"] == 0
