#!/usr/bin/env bash
# The test suite: lint, then pytest. Run through `make test` (which bootstraps first).
# With CI=true, the eBPF and Docker tests fail instead of skipping when they cannot run.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
.venv/bin/ruff check daemon tests bench hatch_build.py
.venv/bin/mypy
.venv/bin/pytest -ra "$@"
