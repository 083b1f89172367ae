"""Findings: what a rule matched, in the shape of Falco's JSON alert plus our context."""

from __future__ import annotations

import enum
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


class Priority(enum.IntEnum):
    """Falco's eight levels; a lower value is more severe."""

    EMERGENCY = 0
    ALERT = 1
    CRITICAL = 2
    ERROR = 3
    WARNING = 4
    NOTICE = 5
    INFORMATIONAL = 6
    DEBUG = 7

    @classmethod
    def parse(cls, text: str) -> Priority:
        """Parse a level name as Falco spells it (any case; "info" for informational)."""
        name = text.strip().upper()
        if name == "INFO":
            name = "INFORMATIONAL"
        try:
            return cls[name]
        except KeyError:
            levels = ", ".join(p.label for p in cls)
            raise ValueError(f"unknown priority {text!r} (one of: {levels})") from None

    @property
    def label(self) -> str:
        """The level as Falco prints it in alerts: "Warning", "Critical", ..."""
        return self.name.capitalize()


def rfc3339_ns(wall_ns: int) -> str:
    """2026-11-28T03:24:37.123456789Z, as Falco prints its `time`."""
    seconds, nanos = divmod(wall_ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{nanos:09d}Z"


def parse_rfc3339_ns(text: str) -> int:
    """Inverse of rfc3339_ns, accepting any RFC 3339 timestamp; returns ns since the epoch."""
    body = text.strip().replace("z", "Z")
    nanos = 0
    if "." in body:
        head, _, rest = body.partition(".")
        digits = ""
        for ch in rest:
            if not ch.isdigit():
                break
            digits += ch
        nanos = int((digits + "000000000")[:9]) if digits else 0
        body = head + rest[len(digits) :]
    when = datetime.fromisoformat(body.replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp()) * 1_000_000_000 + nanos


HOSTNAME = socket.gethostname()


@dataclass(slots=True, kw_only=True)
class ContainerRef:
    """The container a finding is about, as findings carry it."""

    id: str = "host"  # 12-character short id, or "host"
    full_id: str = "host"
    name: str = "host"
    image: str = ""
    pod: str = ""
    namespace: str = ""


@dataclass(slots=True, kw_only=True)
class ProcessRef:
    """The process a finding is about, with its parent chain (nearest first)."""

    pid: int = 0
    exe: str = ""
    cmdline: str = ""
    parents: list[dict[str, Any]] = field(default_factory=list)


@dataclass(slots=True, kw_only=True)
class Finding:
    """One rule match (or a run of suppressed repeats of it, see `count`).

    `time_ns` is the wall-clock time of the first matching event; `key` identifies repeats of
    the same finding for suppression (rule, container and the rule's key fields).
    """

    rule: str
    priority: Priority
    source: str
    output: str
    time_ns: int
    output_fields: dict[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    hostname: str = HOSTNAME
    container: ContainerRef = field(default_factory=ContainerRef)
    process: ProcessRef | None = None
    count: int = 1
    first_time_ns: int = 0
    last_time_ns: int = 0
    key: str = ""
    id: int | None = None

    def __post_init__(self) -> None:
        if not self.first_time_ns:
            self.first_time_ns = self.time_ns
        if not self.last_time_ns:
            self.last_time_ns = self.time_ns

    def to_json(self) -> dict[str, Any]:
        """The Falco-shaped JSON object (as `json_output` prints it) plus our fields."""
        return {
            "id": self.id,
            "time": rfc3339_ns(self.time_ns),
            "rule": self.rule,
            "priority": self.priority.label,
            "source": self.source,
            "output": self.output,
            "output_fields": self.output_fields,
            "tags": list(self.tags),
            "hostname": self.hostname,
            "container": {
                "id": self.container.id,
                "full_id": self.container.full_id,
                "name": self.container.name,
                "image": self.container.image,
                "pod": self.container.pod,
                "namespace": self.container.namespace,
            },
            "process": None
            if self.process is None
            else {
                "pid": self.process.pid,
                "exe": self.process.exe,
                "cmdline": self.process.cmdline,
                "parents": self.process.parents,
            },
            "count": self.count,
            "first_time": rfc3339_ns(self.first_time_ns),
            "last_time": rfc3339_ns(self.last_time_ns),
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Finding:
        """Rebuild a finding from `to_json` output (the store and the outbox keep that form)."""
        proc = doc.get("process")
        return cls(
            id=doc.get("id"),
            time_ns=parse_rfc3339_ns(doc["time"]),
            rule=doc["rule"],
            priority=Priority.parse(doc["priority"]),
            source=doc["source"],
            output=doc["output"],
            output_fields=dict(doc.get("output_fields") or {}),
            tags=tuple(doc.get("tags") or ()),
            hostname=doc.get("hostname", HOSTNAME),
            container=ContainerRef(**(doc.get("container") or {})),
            process=None if proc is None else ProcessRef(**proc),
            count=int(doc.get("count", 1)),
            first_time_ns=parse_rfc3339_ns(doc.get("first_time") or doc["time"]),
            last_time_ns=parse_rfc3339_ns(doc.get("last_time") or doc["time"]),
        )
