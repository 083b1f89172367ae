#!/usr/bin/env bash
# Regenerate the key reference in docs/configuration.md from the config dataclasses.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
doc=$here/docs/configuration.md
head=$(sed '/<!-- reference:begin -->/q' "$doc")
{ printf '%s\n\n' "$head"; "$here/.venv/bin/python" -m cauditd.config; printf '\n<!-- reference:end -->\n'; } > "$doc.new"
mv "$doc.new" "$doc"
