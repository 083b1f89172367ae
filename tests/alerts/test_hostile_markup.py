"""Strings a container chose reach each chat service as text: no mention, no disguised link,
no control sequence, and a payload the service still accepts (the local services validate it)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from cauditd.alerts import markup
from cauditd.findings import Priority, ProcessRef
from tests.alerts.conftest import Daemon, eventually, finding, sink
from tests.alerts.services import ChatServices
from tests.alerts.test_payloads import KINDS

HOSTILE = ("<!channel> <!here|here> <@U024BE7LH> <https://evil.example/login|Open the runbook> "
           "[Open the runbook](https://evil.example/login) <users/all> <users/123> @everyone "
           "@here @channel @all <@1234567890> ||hidden|| ```fence \x1b[31mred\x1b]0;title\x07 "
           "\u202eevil\n# heading \\xff")
# What must not reach a service raw, by service: the markup that service would act on (Markdown
# services see it backslash-escaped, so an unescaped opener is what must not be there).
MENTION = r"@(?:everyone|here|channel|all)"
MARKDOWN = [r"(?<!\\)<", r"(?<!\\)\]\(", r"(?<!\\)\|\|", r"(?<!\\)`", MENTION]
FORBIDDEN: dict[str, list[str]] = {
    "slack": [r"<!channel>", r"<!here", r"<@U024BE7LH>", r"<https://evil", MENTION],
    "mattermost": MARKDOWN,
    "rocketchat": MARKDOWN,
    "discord": [*MARKDOWN, r"(?<!\\)<@1234567890>"],
    "teams": [r"\]\(https://", r"<https://", r"<@", MENTION],
    "teams-legacy": [MENTION],
    "googlechat": [r"<users/all>", r"<users/123>", r"<https://evil", MENTION],
}
EVERYWHERE = ["\x1b", "\x07", "\u202e", "\udcff"]


def strings(value: Any) -> list[str]:
    """Every string inside a JSON payload."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


@pytest.mark.parametrize(("service", "kind", "options"), KINDS, ids=[k[0] for k in KINDS])
async def test_hostile_strings_are_text_on_every_service(
    services: ChatServices, daemon_factory: Callable[..., Daemon],
    service: str, kind: str, options: dict[str, Any],
) -> None:  # fmt: skip
    daemon = daemon_factory([sink("chat", kind, services.url(service), **options)])
    await daemon.start()
    hostile = finding(output=HOSTILE, container=f"web {HOSTILE[:120]}", priority=Priority.CRITICAL)
    hostile.process = ProcessRef(pid=7, exe="/tmp/\udcff", cmdline=HOSTILE)
    daemon.add(hostile)
    await eventually(lambda: len(services.of(service)) == 1, f"{service} got the message")
    assert services.invalid == []
    body = services.of(service)[0].body
    texts = strings(body)
    raw = json.dumps(body, ensure_ascii=False)
    if service == "webhook":  # JSON for programs: the exact strings, valid JSON
        assert body["output"] == HOSTILE
        return
    for pattern in FORBIDDEN[service] + [re.escape(c) for c in EVERYWHERE]:
        assert not any(re.search(pattern, t) for t in texts), f"{pattern} reached {service}: {raw}"
    assert "evil.example/login" in raw  # the text is still there, as text
    if service == "discord":
        assert body["allowed_mentions"] == {"parse": []}


def test_markdown_escapes_render_as_the_original_text() -> None:
    escaped = markup.markdown("[a](b) *x* `y` <z> # h \\")
    assert escaped == "\\[a\\]\\(b\\) \\*x\\* \\`y\\` \\<z\\> \\# h \\\\"
    assert markup.fit("[" * 50, 20, markup.markdown).endswith("…")
    assert len(markup.fit("[" * 50, 20, markup.markdown)) <= 20
