"""cauditctl prints what containers chose as inert text: no ANSI/OSC sequence reaches the
terminal, and a newline in a finding cannot print a fake row."""

from __future__ import annotations

import io
import json
import re

from cauditd.ctl import COLOURS, RESET, print_dicts, print_findings

HOSTILE = ("\x1b]0;pwned\x07\x1b[2J\x1b[1;32mOK\x1b[0m\r\n"
           "99  2026-01-01 00:00:00  Notice  Fake rule  web  all is well\u202e\x9b31m")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def hostile_finding(n: int) -> dict[str, object]:
    return {"id": n, "time": "2026-12-01T10:00:00.000000000Z", "priority": "Critical",
            "rule": "Read sensitive file", "container": {"name": HOSTILE},
            "output": f"opened {HOSTILE}", "count": 1}


def test_tables_escape_every_control_sequence_and_keep_one_row_per_finding() -> None:
    out = Terminal()
    print_findings([hostile_finding(1), hostile_finding(2)], out, as_json=False)
    lines = out.getvalue().splitlines()
    assert len(lines) == 3  # the header and one row per finding
    ours = re.escape(COLOURS["Critical"]) + "|" + re.escape(RESET)
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202e]", re.sub(ours, "", out.getvalue()))
    assert "\\x1b]0;pwned\\x07" in lines[1] and "\\r\\n99" in lines[1]

    follow = Terminal()
    print_findings([hostile_finding(3)], follow, as_json=False, header=False)
    assert len(follow.getvalue().splitlines()) == 1

    plain = io.StringIO()
    print_dicts([{"name": HOSTILE, "labels": {"x": HOSTILE}}], plain, as_json=False)
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202e]", plain.getvalue())
    assert len(plain.getvalue().splitlines()) == 2


def test_json_output_is_data() -> None:
    out = io.StringIO()
    print_findings([hostile_finding(1)], out, as_json=True)
    assert "\x1b" not in out.getvalue() and json.loads(out.getvalue())["output"].endswith("31m")
