"""A finding's text made inert for each chat service's markup: shown as text, never as a mention,
a disguised link, a hidden spoiler or a code block that swallows the rest.

The text of a finding holds what a container chose (file names, argv, DNS names, labels), so
every value a sink puts in a message goes through its service's function here:

- Slack (mrkdwn): `&`, `<`, `>` as entities, which disarms `<!channel>`, `<@U123>`, `<url|text>`;
- Markdown services (Discord, Mattermost, Rocket.Chat): ASCII punctuation that CommonMark or
  Discord read as markup escaped with a backslash (masked links `[text](url)`, autolinks
  `<url>`, `<@id>` mentions, `||spoilers||`, code fences, headings, emphasis);
- Teams Adaptive Cards, whose Markdown subset has no escapes: the sequences that make a link
  (`](`, `<`) broken with a zero-width space;
- Google Chat, whose text markup has no escapes either: `<` broken the same way, which disarms
  `<users/all>`, `<users/123>` and `<url|text>`.

On every service a bare `@word` (`@everyone`, `@here`, `@channel`, `@all`) gets a zero-width
space after the `@`, and control characters other than newline and tab are written as escapes
(cauditd.text.multiline). Discord's payload also sets `allowed_mentions` to nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from cauditd import text
from cauditd.alerts.message import clip

ZWSP = "\u200b"
_MENTION = re.compile(r"@(?=\w)")
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_~|\[\]()<>#])")
_LINK_OPENERS = re.compile(r"(\]\(|<)")


def _mentions(value: str) -> str:
    return _MENTION.sub("@" + ZWSP, text.multiline(value))


def slack(value: str) -> str:
    """Slack mrkdwn: entities for its three control characters."""
    return _mentions(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def markdown(value: str) -> str:
    """Discord, Mattermost and Rocket.Chat: backslash before every markup character."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", _mentions(value))


def teams(value: str) -> str:
    """Teams Adaptive Card text (a Markdown subset without escapes): links broken."""
    return _LINK_OPENERS.sub(lambda m: m.group()[0] + ZWSP + m.group()[1:], _mentions(value))


def googlechat(value: str) -> str:
    """Google Chat text markup (no escapes): `<` can no longer open a mention or a link."""
    return _mentions(value).replace("<", "<" + ZWSP)


def plain(value: str) -> str:
    """Services that render plain text (Teams MessageCard with markdown off)."""
    return _mentions(value)


def fit(value: str, limit: int, escape: Callable[[str], str]) -> str:
    """`escape(value)` in at most `limit` characters: the raw text is clipped (with an
    ellipsis) before escaping, as much as the escapes need, so no escape is cut in half."""
    room = limit
    escaped = escape(clip(value, room))
    while len(escaped) > limit and room > 1:
        room = max(1, room - (len(escaped) - limit))
        escaped = escape(clip(value, room))
    return escaped if len(escaped) <= limit else ""
