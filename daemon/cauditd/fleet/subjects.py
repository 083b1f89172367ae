"""Names on the wire: subjects, stream settings and message ids, shared by daemon and cauditctl.

Subjects carry host, kind and priority so consumers filter without decoding:
`<prefix>.<host>.finding.<priority>`, `<prefix>.<host>.flow`, `<prefix>.<host>.dns`, and
`<prefix>.<host>.heartbeat` and `<prefix>.rules.<bucket>.status.<host>` (in a stream of
its own, <stream>_HOSTS, that keeps the newest message per subject).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cauditd.findings import Priority

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
KINDS = ("finding", "flow", "dns")
HEARTBEAT = "heartbeat"


def host_token(hostname: str) -> str:
    """A host name as one subject token: anything but letters, digits, '-' and '_' becomes '_'."""
    return _UNSAFE.sub("_", hostname.strip()) or "_"


def priority_token(priority: Priority) -> str:
    """A priority as a subject token: "critical", "warning", ..."""
    return priority.name.lower()


@dataclass(frozen=True, slots=True)
class Subjects:
    """The subjects of one prefix; `host` is "*" in filters over every host."""

    prefix: str = "cauditd"

    def finding(self, host: str, priority: Priority | str) -> str:
        level = priority if isinstance(priority, str) else priority_token(priority)
        return f"{self.prefix}.{host}.finding.{level}"

    def record(self, host: str, kind: str) -> str:
        return f"{self.prefix}.{host}.{kind}"

    def heartbeat(self, host: str) -> str:
        return f"{self.prefix}.{host}.{HEARTBEAT}"

    def stream_subjects(self) -> list[str]:
        """What the main stream captures: findings of every priority, flows and DNS."""
        return [f"{self.prefix}.*.finding.*", f"{self.prefix}.*.flow", f"{self.prefix}.*.dns"]

    def finding_filters(self, host: str | None, min_priority: Priority | None) -> list[str]:
        """Subject filters selecting a host's (or every host's) findings at or above a level."""
        who = host_token(host) if host else "*"
        if min_priority is None or min_priority == Priority.DEBUG:
            return [self.finding(who, "*")]
        return [self.finding(who, p) for p in Priority if p <= min_priority]

    def rules_status(self, bucket: str) -> str:
        """Where followers report what they did with a pushed rule set."""
        return f"{self.prefix}.rules.{bucket}.status"


def message_id(host: str, kind: str, record_id: int | str) -> str:
    """Nats-Msg-Id of a record: stable across retries and restarts, unique per host."""
    return f"cauditd-{host}-{kind}-{record_id}"
