#!/usr/bin/env bash
# Regenerate the field table in docs/rules.md from the field registry (cauditd.rules.fields).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
"$here/.venv/bin/python" - "$here/docs/rules.md" <<'PY'
import sys
from pathlib import Path

from cauditd.rules.fields import markdown_table

doc = Path(sys.argv[1])
head, rest = doc.read_text().split("<!-- fields:begin -->\n", 1)
_, tail = rest.split("\n<!-- fields:end -->", 1)
doc.write_text(f"{head}<!-- fields:begin -->\n{markdown_table()}\n<!-- fields:end -->{tail}")
PY
