#!/usr/bin/env bash
# Install cauditd on this host as a systemd service: the package in its own venv under $PREFIX,
# the unit, a default config (kept if one exists), the API's read and admin tokens (made once,
# 0600 root) and the state directory. pip honours PIP_* variables (PIP_NO_INDEX, PIP_FIND_LINKS
# for an offline install from scripts/wheelhouse.sh's wheels).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
prefix=${PREFIX:-/opt/cauditd}
config=/etc/cauditd/cauditd.toml

# 32 random bytes as base64url without padding (43 characters), readable by root only.
make_token() {
    (umask 077 && head -c 32 /dev/urandom | base64 -w0 | tr '+/' '-_' | tr -d '=' > "$1" \
        && echo >> "$1")
}

/usr/bin/python3 -m venv --system-site-packages "$prefix/venv"
"$prefix/venv/bin/pip" install -q --upgrade "$here"
install -d -m 0755 /etc/cauditd /etc/cauditd/rules.d
for role in read admin; do
    token=/etc/cauditd/$role.token
    [ -s "$token" ] || make_token "$token"
    chown root:root "$token"
    chmod 0600 "$token"
done
[ -e "$config" ] || install -m 0640 "$here/systemd/cauditd.toml" "$config"
if ! grep -q '^\[\[api\.tokens\]\]' "$config"; then
    echo "warning: $config has no [[api.tokens]]: the API is open to every local user;" \
        "see systemd/cauditd.toml and docs/security.md" >&2
fi
install -d -m 0700 /var/lib/cauditd
sed "s|/opt/cauditd|$prefix|g" "$here/systemd/cauditd.service" > /etc/systemd/system/cauditd.service
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    echo "installed; start it with: systemctl enable --now cauditd"
else
    echo "installed; systemd is not running here, so start it with: $prefix/venv/bin/cauditd run"
fi
