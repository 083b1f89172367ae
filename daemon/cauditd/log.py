"""Logging to stderr: one line per record, as text or as JSON for log shippers.

Messages carry strings a container chose (paths, names, argv), so neither format lets them end
a line or reach a terminal as control sequences: text lines escape every control character in
the message (`\n`, `\x1b`; cauditd.text.one_line) and fold tracebacks with " | "; JSON lines
are valid JSON whatever the bytes (cauditd.text.json_dumps).
"""

from __future__ import annotations

import logging
import sys
import time

from cauditd import text


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the exception if any."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return text.json_dumps(doc)


class TextFormatter(logging.Formatter):
    """`LEVEL logger: message`, with a traceback folded onto the same line."""

    def __init__(self) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        record.message = text.one_line(record.getMessage())
        line = self.formatMessage(record)
        trace = self.formatException(record.exc_info) if record.exc_info else ""
        if record.stack_info:
            trace += "\n" + self.formatStack(record.stack_info)
        if trace:
            line += " | " + text.multiline(trace).replace("\n", " | ")
        return line


def setup(level: str = "info", fmt: str = "text") -> None:
    if fmt not in ("text", "json"):
        raise ValueError(f"log_format must be 'text' or 'json', not {fmt!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # A line per API request (dashboards poll /metrics every few seconds) only when debugging.
    access = logging.getLogger("aiohttp.access")
    access.setLevel(logging.DEBUG if level.lower() == "debug" else logging.WARNING)
