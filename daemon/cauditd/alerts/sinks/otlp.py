"""OTLP/HTTP logs: one OpenTelemetry log record per finding, POSTed as protobuf to a Collector.

The record carries semantic-convention attributes (host.name, container.*, k8s.*, process.*),
cauditd.rule / cauditd.priority / cauditd.tags, log.record.uid = the delivery key, severity
mapped from the priority, and the finding's JSON as its body. Only the message types of
opentelemetry-proto are used (no SDK). Per the OTLP/HTTP spec, 429, 502, 503 and 504 are retried
(honouring Retry-After); a partial success that rejected the record is not retried and the row is
kept as failed with the Collector's message.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import aiohttp

from cauditd import __version__
from cauditd.alerts.message import Message
from cauditd.alerts.sinks.base import DELIVERED, USER_AGENT, Delivery, Outcome, Sink, retry_after_s
from cauditd.config import SinkConfig
from cauditd.findings import Priority
from cauditd.protowire import decode_message

if TYPE_CHECKING:
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue

CONTENT_TYPE = "application/x-protobuf"
RETRYABLE = (429, 502, 503, 504)
SCOPE = "cauditd"
SEVERITY = {  # OpenTelemetry SeverityNumber per Falco priority
    Priority.EMERGENCY: 24, Priority.ALERT: 23, Priority.CRITICAL: 21, Priority.ERROR: 17,
    Priority.WARNING: 13, Priority.NOTICE: 10, Priority.INFORMATIONAL: 9, Priority.DEBUG: 5,
}  # fmt: skip
# (attribute, path into the finding's JSON)
ATTRIBUTES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("container.id", ("container", "full_id")),
    ("container.name", ("container", "name")),
    ("container.image.name", ("container", "image")),
    ("k8s.pod.name", ("container", "pod")),
    ("k8s.namespace.name", ("container", "namespace")),
    ("process.pid", ("process", "pid")),
    ("process.executable.path", ("process", "exe")),
    ("process.command_line", ("process", "cmdline")),
    ("cauditd.rule", ("rule",)),
    ("cauditd.priority", ("priority",)),
    ("cauditd.source", ("source",)),
    ("cauditd.tags", ("tags",)),
    ("cauditd.count", ("count",)),
    ("cauditd.finding.id", ("id",)),
)


def _lookup(document: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = document
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _set_value(target: AnyValue, value: Any) -> None:
    if isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, int):
        target.int_value = value
    elif isinstance(value, float):
        target.double_value = value
    elif isinstance(value, list | tuple):
        for item in value:
            _set_value(target.array_value.values.add(), item)
    else:
        target.string_value = str(value)


def request_body(message: Message, key: str, *, now_ns: int | None = None) -> bytes:
    """An ExportLogsServiceRequest with one record for the message's finding (or summary)."""
    import json

    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    document = message.document
    request = ExportLogsServiceRequest()
    resource_logs = request.resource_logs.add()
    for name, value in (("service.name", "cauditd"), ("service.version", __version__),
                        ("host.name", message.hostname)):
        attribute = resource_logs.resource.attributes.add(key=name)
        attribute.value.string_value = value
    scope_logs = resource_logs.scope_logs.add()
    scope_logs.scope.name = SCOPE
    scope_logs.scope.version = __version__
    record = scope_logs.log_records.add()
    record.time_unix_nano = message.time_ns
    record.observed_time_unix_nano = now_ns or time.time_ns()
    record.severity_number = SEVERITY[message.priority]
    record.severity_text = message.priority.label
    record.body.string_value = json.dumps(document, ensure_ascii=False, default=str)
    for name, value in (("host.name", message.hostname), ("log.record.uid", key)):
        record.attributes.add(key=name).value.string_value = value
    for name, path in ATTRIBUTES:
        value = _lookup(document, path)
        if value not in (None, "", []):
            _set_value(record.attributes.add(key=name).value, value)
    return bytes(request.SerializeToString())


def outcome_of_response(status: int, retry_after: str | None, body: bytes) -> Outcome:
    """2xx: delivered unless a partial success rejected the record; 429/502/503/504 retried."""
    if 200 <= status < 300:
        return _partial_success(body)
    detail = _status_message(body)
    error = f"HTTP {status}" + (f": {detail}" if detail else "")
    if status in RETRYABLE:
        return Outcome(ok=False, retry=True, retry_after_s=retry_after_s(retry_after),
                       status=status, error=error)
    return Outcome(ok=False, status=status, error=error)


def _partial_success(body: bytes) -> Outcome:
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse

    response = ExportLogsServiceResponse()
    try:
        response.ParseFromString(body)
    except DecodeError:
        return DELIVERED  # a 2xx is a success; an unreadable body does not undo it
    partial = response.partial_success
    if partial.rejected_log_records:
        why = partial.error_message or "no reason given"
        return Outcome(ok=False, status=200,
                       error=f"partial success: {partial.rejected_log_records} record(s) "
                             f"rejected: {why}"[:300])
    return DELIVERED


def _status_message(body: bytes) -> str:
    """The message (field 2) of a google.rpc.Status error body, else the body as text."""
    try:
        message = decode_message(body).get(2)
    except ValueError:
        message = None
    if message and isinstance(message[-1], bytes):
        return message[-1].decode(errors="replace")[:200]
    return body.decode(errors="replace").strip()[:200]


class OtlpSink(Sink):
    """POSTs protobuf log records to an OTLP/HTTP logs endpoint (.../v1/logs)."""

    def __init__(self, config: SinkConfig, url: str) -> None:
        super().__init__(config)
        self.url = url

    async def send(self, delivery: Delivery, session: aiohttp.ClientSession) -> Outcome:
        headers = {"Content-Type": CONTENT_TYPE, "User-Agent": USER_AGENT,
                   "Idempotency-Key": delivery.key, "X-Cauditd-Delivery": delivery.key}
        body = request_body(delivery.message, delivery.key)
        timeout = aiohttp.ClientTimeout(total=self.config.timeout_s)
        try:
            async with session.post(self.url, data=body, headers=headers,
                                    timeout=timeout) as response:
                payload = await response.content.read(64 * 1024)
                return outcome_of_response(response.status,
                                           response.headers.get("Retry-After"), payload)
        except aiohttp.InvalidURL as exc:
            return Outcome(ok=False, error=f"invalid URL: {exc}")
        except TimeoutError:
            return Outcome(ok=False, retry=True,
                           error=f"timeout: no answer in {self.config.timeout_s:g}s")
        except (aiohttp.ClientError, OSError) as exc:
            return Outcome(ok=False, retry=True, error=f"connection: {exc or type(exc).__name__}")
