"""Rate parsing, token bucket, Retry-After, backoff, Teams format choice, templates, clipping."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cauditd.alerts.delivery import SinkWorker
from cauditd.alerts.message import ELLIPSIS, clip, render_template
from cauditd.alerts.ratelimit import Rate, TokenBucket, parse_rate
from cauditd.alerts.sinks import make_sink
from cauditd.alerts.sinks.base import outcome_of_status, retry_after_s
from cauditd.alerts.sinks.teams import ADAPTIVE, MESSAGECARD, choose_format
from tests.alerts.conftest import finding, sink


@pytest.mark.parametrize(
    ("text", "rate"),
    [("20/min", Rate(20, 60)), ("5/s", Rate(5, 1)), ("100/h", Rate(100, 3600)),
     ("2/10s", Rate(2, 10)), ("", None), ("none", None), ("0", None)],
)  # fmt: skip
def test_parse_rate(text: str, rate: Rate | None) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["20", "20/fortnight", "0/s", "x/min"])
def test_parse_rate_refuses_nonsense(text: str) -> None:
    with pytest.raises(ValueError):
        parse_rate(text)


def test_token_bucket_bursts_then_refills_at_the_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(Rate(3, 60), clock=lambda: now[0])
    assert [bucket.try_take() for _ in range(4)] == [True, True, True, False]
    assert bucket.wait_s() == pytest.approx(20.0)
    now[0] = 20.0
    assert bucket.try_take() and not bucket.try_take()


def test_retry_after_seconds_and_http_dates() -> None:
    now = datetime(2026, 11, 28, 3, 0, 0, tzinfo=UTC)
    assert retry_after_s("7", now) == 7.0
    assert retry_after_s("Sat, 28 Nov 2026 03:00:30 GMT", now) == 30.0
    assert retry_after_s("Sat, 28 Nov 2026 02:00:00 GMT", now) == 0.0
    assert retry_after_s("soon", now) is None and retry_after_s(None, now) is None


@pytest.mark.parametrize(
    ("status", "ok", "retry"),
    [(200, True, False), (204, True, False), (400, False, False), (403, False, False),
     (404, False, False), (408, False, True), (429, False, True), (500, False, True),
     (503, False, True)],
)  # fmt: skip
def test_status_classes(status: int, ok: bool, retry: bool) -> None:
    outcome = outcome_of_status(status, "3", "")
    assert (outcome.ok, outcome.retry) == (ok, retry)
    if retry:
        assert outcome.retry_after_s == 3.0


def test_backoff_doubles_with_jitter_up_to_the_cap_and_retry_after_wins() -> None:
    config = sink("s", "webhook", "http://127.0.0.1:9/", retry_base_s=1.0, retry_max_s=8.0)
    worker = SinkWorker(make_sink(config), store=None)  # type: ignore[arg-type]
    for attempt, full in [(0, 1.0), (1, 2.0), (2, 4.0), (3, 8.0), (10, 8.0)]:
        assert full / 2 <= worker.retry_delay_s(attempt, None) <= full
    assert worker.retry_delay_s(5, 42.0) == 42.0


@pytest.mark.parametrize(
    ("option", "url", "chosen"),
    [("", "https://prod-12.westus.logic.azure.com:443/workflows/abc/triggers/manual", ADAPTIVE),
     ("", "https://contoso.webhook.office.com/webhookb2/abc/IncomingWebhook/def", MESSAGECARD),
     ("adaptive", "https://contoso.webhook.office.com/webhookb2/abc", ADAPTIVE),
     ("messagecard", "https://example.invalid/x", MESSAGECARD)],
)  # fmt: skip
def test_teams_format_by_option_or_url(option: str, url: str, chosen: str) -> None:
    assert choose_format(option, url) == chosen


def test_template_fills_falco_fields_and_finding_fields() -> None:
    found = finding(container="web-7")
    text = render_template("%rule in %container.name: %proc.name (%container.nope)", found)
    assert text == "Terminal shell in container in web-7: sh (<NA>)"


def test_clip() -> None:
    assert clip("short", 10) == "short"
    assert clip("a" * 20, 10) == "a" * 9 + ELLIPSIS and len(clip("a" * 20, 10)) == 10
