#!/usr/bin/env bash
# Idempotent host set-up for cauditd: Debian packages, kernel headers for BCC, tracefs,
# and the project's venv. `scripts/bootstrap.sh` prepares what `make run` needs;
# `scripts/bootstrap.sh --test` adds what the test suite needs (Docker engine, test image).
# A second run on a prepared host does no network work and takes a few seconds.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
want_test=0
[ "${1:-}" = "--test" ] && want_test=1

log() { printf 'bootstrap: %s\n' "$*" >&2; }

need_root() {
    if [ "$(id -u)" -ne 0 ]; then
        log "must run as root (eBPF, apt and dockerd need it)"; exit 1
    fi
}

missing_packages() {
    local pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || echo "$pkg"
    done
}

apt_updated=0
apt_install() {
    local missing
    missing=$(missing_packages "$@")
    [ -z "$missing" ] && return 0
    if [ "$apt_updated" -eq 0 ]; then
        log "apt-get update"; apt-get update -qq; apt_updated=1
    fi
    log "installing: $(echo "$missing" | tr '\n' ' ')"
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

kernel_headers() {
    local kver build
    kver=$(uname -r)
    build=/lib/modules/$kver/build
    [ -e "$build/include" ] && return 0
    if [ "$apt_updated" -eq 0 ]; then apt-get update -qq; apt_updated=1; fi
    if apt-cache show "linux-headers-$kver" >/dev/null 2>&1; then
        apt_install "linux-headers-$kver"
        return 0
    fi
    # No headers package for this kernel: link the distribution's newest. Our probes use only
    # tracepoint arguments and BPF helpers, never struct layouts, so a version mismatch is harmless.
    apt_install linux-headers-amd64
    local dir ver
    dir=$(ls -d /usr/src/linux-headers-*-amd64 | sort -V | tail -n 1)
    ver=${dir#/usr/src/linux-headers-}; ver=${ver%-amd64}
    mkdir -p "/lib/modules/$kver"
    ln -sfn "$dir" "$build"
    ln -sfn "/usr/src/linux-headers-$ver-common" "/lib/modules/$kver/source"
    log "linked $dir as headers for $kver (no matching package)"
}

tracefs() {
    if [ ! -e /sys/kernel/tracing/events ] && ! mountpoint -q /sys/kernel/tracing; then
        mount -t tracefs tracefs /sys/kernel/tracing
    fi
}

venv() {
    local py=/usr/bin/python3 stamp
    [ -x "$here/.venv/bin/python" ] || "$py" -m venv --system-site-packages "$here/.venv"
    # pip install -e builds the compiled record decoder (hatch_build.py): again when it changes
    stamp="$here/.venv/.installed-$(cat "$here/pyproject.toml" "$here/hatch_build.py" \
        "$here/daemon/cauditd/probes/_fastrecords.c" | sha256sum | cut -c1-16)-$want_test"
    if [ ! -e "$stamp" ]; then
        local extra=""
        [ "$want_test" -eq 1 ] && extra="[test]"
        "$here/.venv/bin/pip" install -q --upgrade pip
        "$here/.venv/bin/pip" install -q -e "$here$extra"
        rm -f "$here"/.venv/.installed-*
        touch "$stamp"
    fi
}

need_root
apt_install python3-bpfcc python3-venv iproute2 ca-certificates gcc libc6-dev python3-dev
kernel_headers
tracefs
if [ "$want_test" -eq 1 ]; then
    apt_install docker.io busybox-static systemd prometheus nmap iperf3 bpftool \
        debootstrap systemd-container python3-seccomp nats-server
    "$here/scripts/dockerd.sh"
    "$here/scripts/test-image.sh"
fi
venv
log "ready"
