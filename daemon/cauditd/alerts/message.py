"""What an alert says, before a sink's formatter shapes it: one finding, or a summary of many."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cauditd.findings import Finding, Priority, rfc3339_ns

ELLIPSIS = "…"
SUMMARY_RULE = "cauditd alert summary"
SUMMARY_GROUPS = 10  # groups listed by name in a summary; the rest are counted as "others"

COLOURS = {
    Priority.EMERGENCY: "#7b1fa2",
    Priority.ALERT: "#b71c1c",
    Priority.CRITICAL: "#d32f2f",
    Priority.ERROR: "#f57c00",
    Priority.WARNING: "#fbc02d",
    Priority.NOTICE: "#1976d2",
    Priority.INFORMATIONAL: "#388e3c",
    Priority.DEBUG: "#9e9e9e",
}


def clip(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, ending with an ellipsis when cut."""
    if len(text) <= limit:
        return text
    if limit <= 0:
        return ""
    return text[: limit - 1].rstrip() + ELLIPSIS


def iso_ms(time_ns: int) -> str:
    """ISO 8601 with milliseconds (what Discord and Slack accept)."""
    when = datetime.fromtimestamp(time_ns / 1e9, UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


@dataclass(slots=True)
class Message:
    """One alert message: a title, a body, labelled fields, and what it covers."""

    title: str
    text: str
    priority: Priority
    fields: list[tuple[str, str]]
    time_ns: int
    hostname: str
    document: dict[str, Any]  # Falco-shaped JSON: webhook and exec sinks send this
    finding_ids: list[int] = field(default_factory=list)
    summary_lines: list[str] = field(default_factory=list)

    @property
    def colour(self) -> str:
        return COLOURS[self.priority]

    @property
    def count(self) -> int:
        """How many findings this message stands for."""
        return len(self.finding_ids)

    @property
    def is_summary(self) -> bool:
        return bool(self.summary_lines)


_PLACEHOLDER = re.compile(r"%([A-Za-z_][A-Za-z0-9_.\[\]]*)")


def render_template(template: str, finding: Finding) -> str:
    """Fill %field placeholders from output_fields (Falco names) or the finding's JSON."""
    flat = _flatten(finding.to_json())

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in finding.output_fields:
            return str(finding.output_fields[name])
        return str(flat.get(name, "<NA>"))

    return _PLACEHOLDER.sub(value, template)


def _flatten(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in doc.items():
        if isinstance(value, dict) and key != "output_fields":
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def for_finding(finding: Finding, template: str = "") -> Message:
    """The message for one finding, with rule, container, image, process, host and time."""
    fields = [("Rule", finding.rule), ("Priority", finding.priority.label)]
    container = finding.container
    label = (
        container.name
        if container.id in ("host", container.name)
        else (f"{container.name} ({container.id})")
    )
    fields.append(("Container", label))
    if container.image:
        fields.append(("Image", container.image))
    if container.pod:
        fields.append(("Pod", f"{container.namespace}/{container.pod}"))
    if finding.process is not None:
        fields.append(
            (
                "Process",
                f"{finding.process.cmdline or finding.process.exe} (pid {finding.process.pid})",
            )
        )
    fields.append(("Host", finding.hostname))
    fields.append(("Time", rfc3339_ns(finding.time_ns)))
    if finding.count > 1:
        until = rfc3339_ns(finding.last_time_ns)
        fields.append(("Repeats", f"{finding.count} times until {until}"))
    text = render_template(template, finding) if template else finding.output
    return Message(
        title=f"{finding.priority.label}: {finding.rule}",
        text=text,
        priority=finding.priority,
        fields=fields,
        time_ns=finding.time_ns,
        hostname=finding.hostname,
        document=finding.to_json(),
        finding_ids=[finding.id or 0],
    )


def for_summary(findings: list[Finding], rate: str) -> Message:
    """One message standing for `findings` held back by flood control; its counts add up."""
    groups = Counter((f.rule, f.container.name) for f in findings)
    lines = [f"{n} {rule} on {name}" for (rule, name), n in groups.most_common(SUMMARY_GROUPS)]
    others = groups.most_common()[SUMMARY_GROUPS:]
    if others:
        lines.append(f"{sum(n for _, n in others)} others ({len(others)} rule/container pairs)")
    total = len(findings)
    noun = "finding" if total == 1 else "findings"
    worst = min(f.priority for f in findings)
    last = findings[-1]
    text = f"{total} more {noun}: " + ", ".join(lines)
    ids = [f.id or 0 for f in findings]
    document = {
        "time": rfc3339_ns(last.time_ns),
        "rule": SUMMARY_RULE,
        "priority": worst.label,
        "source": "cauditd",
        "output": text,
        "output_fields": {
            "summary.count": total,
            "summary.rate_limit": rate,
            "summary.finding_ids": ids,
            "summary.groups": [
                {"rule": rule, "container": name, "count": n} for (rule, name), n in groups.items()
            ],
        },
        "tags": ["cauditd_summary"],
        "hostname": last.hostname,
    }
    return Message(
        title=f"{total} more {noun} (rate limit {rate})",
        text=text,
        priority=worst,
        fields=[
            ("Findings", str(total)),
            ("Worst priority", worst.label),
            ("From", rfc3339_ns(findings[0].time_ns)),
            ("To", rfc3339_ns(last.time_ns)),
        ],
        time_ns=last.time_ns,
        hostname=last.hostname,
        document=document,
        finding_ids=ids,
        summary_lines=lines,
    )
