"""Bytes a container controls, as text: one rule inside the daemon, one escaping at its outputs.

Inside, every string read from the kernel or /proc (comm, exe, argv, paths, environment, DNS
names, labels) is UTF-8 decoded with `surrogateescape`: a byte that is not UTF-8 becomes a lone
surrogate (U+DC80..U+DCFF). Nothing raises, rules compare exact bytes (a path with 0xff matches
only itself) and the original bytes come back with `os.fsencode`. `decode` counts every string
that needed it, by field.

At every output (findings and their JSON, the API, logs, the terminal, chat) `printable` writes
each such byte as the four characters `\\xNN` (Python's backslashreplace of the original bytes),
so output is always valid UTF-8 and valid JSON. A name that really contains a backslash followed
by "xff" prints the same: the output is for people and parsers, the bytes are in the kernel.
Control characters stay data in JSON (escaped by the encoder); where they would act (a text log
line, a terminal) `one_line` and `terminal` escape them too.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from typing import Any

UNDECODABLE: Counter[str] = Counter()  # strings that were not UTF-8, by field (metrics read it)

# C0 and C1 controls, DEL, and the Unicode format characters that reorder or hide text
# (bidi overrides and isolates, zero-width joiners, the BOM): on a terminal or in a log line they
# move the cursor, recolour, rewrite the title, or make one row read as another.
_CONTROLS = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ufff9-\ufffb]"
)
_LINE_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def decode(raw: bytes, field: str = "") -> str:
    """`raw` as text; bytes that are not UTF-8 become surrogate escapes (and are counted)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        UNDECODABLE[field or "other"] += 1
        return raw.decode("utf-8", "surrogateescape")


def printable(text: str) -> str:
    """`text` for output: each undecodable byte (a surrogate escape) written as `\\xNN`.

    Any other lone surrogate (from a JSON `\\udXXX` escape, say) is written as `\\udXXX`."""
    if text.isascii():
        return text
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def printable_value(value: Any) -> Any:
    """`printable` applied to every string inside lists, tuples and dicts (keys too)."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {printable_value(k): printable_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(printable_value(v) for v in value)
    return value


def json_dumps(value: Any, *, ensure_ascii: bool = True, **kwargs: Any) -> str:
    """JSON text that is always valid: strings holding undecodable bytes (lone surrogates, which
    strict parsers refuse) go through `printable` first. The check is one substring search (or
    one encode without `ensure_ascii`); only JSON that may hold them is encoded twice."""
    kwargs.setdefault("default", str)
    text = json.dumps(value, ensure_ascii=ensure_ascii, **kwargs)
    if "\\ud" in text if ensure_ascii else not _encodable(text):
        return json.dumps(printable_value(value), ensure_ascii=ensure_ascii, **kwargs)
    return text


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _escape_control(match: re.Match[str]) -> str:
    char = match.group()
    if char in _LINE_ESCAPES:
        return _LINE_ESCAPES[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def multiline(text: str) -> str:
    """`one_line`, except that newlines and tabs stay (chat messages keep their lines)."""
    return _CONTROLS.sub(_keep_lines, printable(text))


def _keep_lines(match: re.Match[str]) -> str:
    return match.group() if match.group() in "\n\t" else _escape_control(match)


def one_line(text: str) -> str:
    """`printable` text with every control character escaped (`\\n`, `\\x1b`, `\\u202e`), so
    it can neither end a log line nor drive a terminal."""
    return _CONTROLS.sub(_escape_control, printable(text))


def terminal(text: str) -> str:
    """Text safe to print on a terminal: `one_line`, plus other invisible format characters
    (Unicode category Cf) escaped."""
    line = one_line(text)
    if line.isascii():
        return line
    return "".join(
        f"\\u{ord(ch):04x}" if unicodedata.category(ch) == "Cf" else ch for ch in line
    )
