"""Sink kinds: how a message is shaped for each chat service, webhook or program."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from cauditd.alerts.message import Message
from cauditd.alerts.sinks import attachments, discord, googlechat, slack, teams, webhook
from cauditd.alerts.sinks.base import Delivery, HttpSink, Outcome, Sink
from cauditd.alerts.sinks.exec import ExecSink
from cauditd.config import ConfigError, SinkConfig, check_file_permissions

FORMATTERS: dict[str, Callable[[Message], dict[str, Any]]] = {
    "slack": slack.payload,
    "mattermost": attachments.payload,
    "rocketchat": attachments.payload,
    "discord": discord.payload,
    "googlechat": googlechat.payload,
    "webhook": webhook.payload,
}
KINDS = (*FORMATTERS, "teams", "exec", "otlp")

__all__ = ["KINDS", "Delivery", "Outcome", "Sink", "make_sink"]


def sink_url(config: SinkConfig) -> str:
    """The sink's URL: `url`, else the first line of `url_file`."""
    if config.url:
        return config.url.strip()
    if config.url_file:
        try:
            check_file_permissions(config.url_file, "a webhook URL file", secret=True)
            return Path(config.url_file).read_text().strip().splitlines()[0].strip()
        except ConfigError as exc:
            raise ValueError(f"sink {config.name}: {exc}") from None
        except (OSError, IndexError) as exc:
            raise ValueError(f"sink {config.name}: cannot read url_file: {exc}") from None
    raise ValueError(f"sink {config.name}: kind {config.kind} needs url or url_file")


def make_sink(config: SinkConfig) -> Sink:
    """Build the sink a config entry describes; ValueError says what is wrong with it."""
    if config.kind == "exec":
        return ExecSink(config)
    if config.kind not in KINDS:
        kinds = ", ".join(KINDS)
        raise ValueError(f"sink {config.name}: unknown kind {config.kind!r} (one of {kinds})")
    url = sink_url(config)
    if config.kind == "otlp":
        from cauditd.alerts.sinks.otlp import OtlpSink  # opentelemetry-proto only when used

        return OtlpSink(config, url)
    if config.kind == "teams":
        chosen = teams.choose_format(config.format, url)
        formatter = teams.message_card if chosen == teams.MESSAGECARD else teams.adaptive_card
        return HttpSink(config, url, formatter)
    return HttpSink(config, url, FORMATTERS[config.kind])
