#!/usr/bin/env bash
# Build, once, a Debian root whose init is systemd, for running the installed cauditd unit under a
# real systemd in a systemd-nspawn machine (tests/reliability/test_unit.py). Prints its path.
#
# The root holds what `make install` needs (python3, python3-venv, python3-bpfcc; gcc, libc6-dev
# and python3-dev to build the compiled record decoder) plus systemd; the machine borrows the
# host's kernel headers, tracefs, bpffs and Docker socket. It is cached under $CAUDITD_TEST_CACHE
# (default /var/cache/cauditd-test), keyed by this script, the suite and the mirror, so a second
# call prints the path at once. Older roots are removed.
set -euo pipefail

suite=bookworm
packages=(systemd systemd-sysv dbus procps python3 python3-venv python3-bpfcc ca-certificates
          gcc libc6-dev python3-dev)
cache=${CAUDITD_TEST_CACHE:-/var/cache/cauditd-test}

log() { printf 'nspawn-root: %s\n' "$*" >&2; }

# The Debian mirror apt already uses (deb822 .sources first, then one-line .list entries).
debian_mirror() {
    local uri
    uri=$(awk -v suite="$suite" '
        /^URIs:/ { uris = $2 }
        /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == suite) { print uris; exit } }
        /^$/ { uris = "" }' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
    if [ -z "$uri" ]; then
        uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
            | awk -v suite="$suite" '$1 == "deb" && $3 == suite { print $2; exit }' || true)
    fi
    echo "${uri:-http://deb.debian.org/debian}"
}

mirror=${CAUDITD_DEBIAN_MIRROR:-$(debian_mirror)}
key=$({ cat "$0"; echo "$suite $mirror ${packages[*]}"; } | sha256sum | cut -c1-16)
root=$cache/nspawn-root-$key

if [ -e "$root/.complete" ]; then
    echo "$root"
    exit 0
fi
for tool in debootstrap systemd-nspawn; do
    command -v "$tool" >/dev/null || { log "$tool missing (apt-get install debootstrap systemd-container)"; exit 1; }
done
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9  # a parallel caller waits for this build instead of starting its own
if [ -e "$root/.complete" ]; then
    echo "$root"
    exit 0
fi

work=$root.building
rm -rf "$work"
log "debootstrap $suite from $mirror into $work (a few minutes, once)"
started=$SECONDS
if ! debootstrap --variant=minbase --include="$(IFS=,; echo "${packages[*]}")" \
        "$suite" "$work" "$mirror" >"$cache/debootstrap.log" 2>&1; then
    log "debootstrap failed; last lines of $cache/debootstrap.log:"
    tail -n 20 "$cache/debootstrap.log" >&2
    rm -rf "$work"
    exit 1
fi

# A fresh machine id per boot; no login prompts on the (absent) console.
: >"$work/etc/machine-id"
for unit in console-getty.service getty.target systemd-logind.service; do
    ln -sfn /dev/null "$work/etc/systemd/system/$unit"
done
rm -rf "$work"/var/cache/apt/archives/*.deb "$work"/var/lib/apt/lists/*
touch "$work/.complete"

for old in "$cache"/nspawn-root-*; do
    [ "$old" = "$work" ] || [ "$old" = "$root" ] || rm -rf "$old"
done
mv "$work" "$root"
log "built $root in $((SECONDS - started)) s ($(du -sh "$root" | cut -f1))"
echo "$root"
