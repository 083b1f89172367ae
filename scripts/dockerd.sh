#!/usr/bin/env bash
# Start a Docker engine for the tests when none answers. Always without iptables rules and
# without IP forwarding: test containers may talk to each other and to loopback, never beyond.
set -euo pipefail
log() { printf 'dockerd: %s\n' "$*" >&2; }

sysctl -qw net.ipv4.ip_forward=0
if docker info >/dev/null 2>&1; then
    exit 0
fi
command -v dockerd >/dev/null || { log "dockerd is not installed (apt-get install docker.io)"; exit 1; }
mkdir -p /var/log
log "starting dockerd --iptables=false --ip-forward=false"
setsid dockerd --iptables=false --ip-forward=false >/var/log/cauditd-test-dockerd.log 2>&1 < /dev/null &
for _ in $(seq 1 180); do
    docker info >/dev/null 2>&1 && exit 0
    sleep 0.5
done
log "engine did not answer within 90 s; see /var/log/cauditd-test-dockerd.log"
tail -n 20 /var/log/cauditd-test-dockerd.log >&2
exit 1
