"""Log records are one line each and carry no control sequence, whatever the message holds."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from cauditd import log

HOSTILE = "/tmp/\udcff\nERROR cauditd.fake: all clear\r\x1b]0;pwned\x07\x1b[2J\u202e"


@pytest.fixture
def capture() -> Iterator[tuple[io.StringIO, logging.Logger]]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield io.StringIO(), logging.getLogger("cauditd.test")
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_hostile_message_stays_one_inert_line(
    capture: tuple[io.StringIO, logging.Logger], fmt: str
) -> None:
    buffer, logger = capture
    log.setup("info", fmt)
    logging.getLogger().handlers[0].setStream(buffer)  # type: ignore[attr-defined]
    logger.warning("exec of %s", HOSTILE)
    try:
        raise ValueError(HOSTILE)
    except ValueError:
        logger.exception("failed on %s", HOSTILE)
    lines = buffer.getvalue().splitlines()
    assert len(lines) == 2
    for line in lines:
        assert not any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 or c == "\u202e" for c in line)
        line.encode("utf-8")  # no lone surrogate
    if fmt == "json":
        assert json.loads(lines[0])["message"].startswith("exec of /tmp/\\xff\n")
    else:
        assert lines[0].startswith("WARNING cauditd.test: exec of /tmp/\\xff\\nERROR")
        assert " | Traceback" in lines[1]
