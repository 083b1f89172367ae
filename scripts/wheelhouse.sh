#!/usr/bin/env bash
# Wheels of cauditd's run-time dependencies and of its build backend, for installing it offline:
# `PIP_NO_INDEX=1 PIP_FIND_LINKS=DIR scripts/install.sh` (the nspawn machine of
# tests/reliability/test_unit.py does; so can a host without PyPI). Prints DIR. Built with the
# checkout's .venv pip, cached under $CAUDITD_TEST_CACHE keyed by pyproject.toml.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cache=${CAUDITD_TEST_CACHE:-/var/cache/cauditd-test}
py=$here/.venv/bin/python
key=$(cat "$here/pyproject.toml" "$0" | sha256sum | cut -c1-16)
dir=$cache/wheels-$key
if [ ! -e "$dir/.complete" ]; then
    mkdir -p "$cache"
    rm -rf "$dir.building"
    mapfile -t requirements < <("$py" -c 'import tomllib, sys
doc = tomllib.load(open(sys.argv[1], "rb"))
print("\n".join(doc["build-system"]["requires"] + doc["project"]["dependencies"]))' \
        "$here/pyproject.toml")
    "$py" -m pip wheel -q --disable-pip-version-check -w "$dir.building" "${requirements[@]}" >&2
    touch "$dir.building/.complete"
    for old in "$cache"/wheels-*; do
        [ "$old" = "$dir.building" ] || rm -rf "$old"
    done
    mv "$dir.building" "$dir"
fi
echo "$dir"
