"""What every sink shares: the delivery it is handed, the outcome it reports, and HTTP posting."""

from __future__ import annotations

import abc
import email.utils
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp

from cauditd import text
from cauditd.alerts.message import Message
from cauditd.config import SinkConfig

USER_AGENT = "cauditd-alerts"
PERMANENT_OK = range(200, 300)
RETRIED_4XX = (408, 429)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message for one sink, with the key a receiver uses to drop a retried duplicate."""

    key: str
    message: Message


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one attempt went: delivered, worth retrying (maybe after `retry_after_s`), or not."""

    ok: bool
    retry: bool = False
    retry_after_s: float | None = None
    status: int | None = None
    error: str = ""

    @property
    def reason(self) -> str:
        """A short label for metrics: the HTTP status, or the kind of error."""
        if self.status is not None:
            return str(self.status)
        return self.error.split(":", 1)[0][:40] or "error"


DELIVERED = Outcome(ok=True)


class Sink(abc.ABC):
    """A place findings go. `send` never raises for delivery problems; it reports an Outcome."""

    def __init__(self, config: SinkConfig) -> None:
        self.config = config
        self.name = config.name

    @abc.abstractmethod
    async def send(self, delivery: Delivery, session: aiohttp.ClientSession) -> Outcome:
        """Make one attempt at delivering."""


def retry_after_s(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delay in seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value.strip()))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def redirect_refused(status: int, location: str) -> Outcome:
    """A 3xx is a permanent failure: following it would send findings (and the URL's secret
    path) wherever the receiver points. Only the target's scheme and host are reported."""
    target = urllib.parse.urlsplit(location)
    where = f" to {target.scheme}://{target.hostname}" if target.hostname else ""
    return Outcome(ok=False, status=status,
                   error=f"HTTP {status}: redirect{where} not followed; configure the final URL")


def outcome_of_status(status: int, retry_after: str | None, body: str) -> Outcome:
    """2xx delivered; 408, 429 and 5xx retried; any other status is a permanent failure."""
    if status in PERMANENT_OK:
        return DELIVERED
    error = f"HTTP {status}: {body.strip()[:200]}" if body.strip() else f"HTTP {status}"
    if status in RETRIED_4XX or status >= 500:
        return Outcome(
            ok=False,
            retry=True,
            retry_after_s=retry_after_s(retry_after),
            status=status,
            error=error,
        )
    return Outcome(ok=False, status=status, error=error)


class HttpSink(Sink):
    """POSTs the formatter's JSON to the sink's URL."""

    def __init__(
        self, config: SinkConfig, url: str, formatter: Callable[[Message], dict[str, Any]]
    ) -> None:
        super().__init__(config)
        self.url = url
        self.formatter = formatter

    def body(self, message: Message) -> bytes:
        """The request body for `message`."""
        return text.json_dumps(self.formatter(message), ensure_ascii=False).encode()

    async def send(self, delivery: Delivery, session: aiohttp.ClientSession) -> Outcome:
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": USER_AGENT,
            "Idempotency-Key": delivery.key,
            "X-Cauditd-Delivery": delivery.key,
        }
        timeout = aiohttp.ClientTimeout(total=self.config.timeout_s)
        try:
            async with session.post(
                self.url, data=self.body(delivery.message), headers=headers, timeout=timeout,
                allow_redirects=False,
            ) as response:
                if 300 <= response.status < 400:
                    return redirect_refused(response.status, response.headers.get("Location", ""))
                body = (await response.content.read(1024)).decode(errors="replace")
                return outcome_of_status(response.status, response.headers.get("Retry-After"), body)
        except aiohttp.InvalidURL as exc:
            return Outcome(ok=False, error=f"invalid URL: {exc}")
        except TimeoutError:
            wait = self.config.timeout_s
            return Outcome(ok=False, retry=True, error=f"timeout: no answer in {wait:g}s")
        except (aiohttp.ClientError, OSError) as exc:
            return Outcome(ok=False, retry=True, error=f"connection: {exc or type(exc).__name__}")
