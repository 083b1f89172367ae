#!/usr/bin/env bash
# Install cauditd on this host as a systemd service: the package in its own venv under $PREFIX,
# the unit, a default config (kept if one exists) and the state directory.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
prefix=${PREFIX:-/opt/cauditd}

/usr/bin/python3 -m venv --system-site-packages "$prefix/venv"
"$prefix/venv/bin/pip" install -q --upgrade "$here"
install -d -m 0755 /etc/cauditd /etc/cauditd/rules.d
[ -e /etc/cauditd/cauditd.toml ] || install -m 0640 "$here/systemd/cauditd.toml" /etc/cauditd/cauditd.toml
install -d -m 0700 /var/lib/cauditd
sed "s|/opt/cauditd|$prefix|g" "$here/systemd/cauditd.service" > /etc/systemd/system/cauditd.service
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    echo "installed; start it with: systemctl enable --now cauditd"
else
    echo "installed; systemd is not running here, so start it with: $prefix/venv/bin/cauditd run"
fi
