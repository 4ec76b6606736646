#!/usr/bin/env bash
# Install the appliance as a systemd service: a dedicated system user, the home
# folder, the configuration and the unit file, then enable and start it.
# Run as root from the repository: scripts/install-service.sh [--no-start]
# scripts/install-service.sh --print-unit writes the unit to stdout and exits.
# Settings (environment): APPLIANCE_USER (appliance), APPLIANCE_HOME
# (/var/lib/edge-appliance), APPLIANCE_CONFIG_DIR (/etc/edge-appliance),
# APPLIANCE_PREFIX (the repository; it must contain .venv, see README).
set -euo pipefail
cd "$(dirname "$0")/.."

user="${APPLIANCE_USER:-appliance}"
home="${APPLIANCE_HOME:-/var/lib/edge-appliance}"
config_dir="${APPLIANCE_CONFIG_DIR:-/etc/edge-appliance}"
prefix="${APPLIANCE_PREFIX:-$(pwd)}"
unit=/etc/systemd/system/appliance.service

render_unit() {
    sed -e "s|/opt/edge-appliance|$prefix|g" \
        -e "s|/var/lib/edge-appliance|$home|g" \
        -e "s|/etc/edge-appliance|$config_dir|g" \
        -e "s|^User=appliance|User=$user|" \
        -e "s|^Group=appliance|Group=$user|" \
        systemd/appliance.service
}

if [ "${1:-}" = "--print-unit" ]; then
    render_unit
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "error: run as root (it creates a user and writes $unit)" >&2
    exit 1
fi
if [ ! -x "$prefix/.venv/bin/python" ]; then
    echo "error: $prefix/.venv/bin/python not found; run scripts/test.sh or" \
        "create the venv first" >&2
    exit 1
fi

id -u "$user" >/dev/null 2>&1 ||
    useradd --system --home-dir "$home" --shell /usr/sbin/nologin "$user"
install -d -o "$user" -g "$user" -m 0750 "$home"
install -d -m 0755 "$config_dir"
[ -f "$config_dir/config.toml" ] || install -m 0644 config.toml "$config_dir/config.toml"

render_unit >"$unit"
systemd-analyze verify "$unit"
systemctl daemon-reload
systemctl enable appliance.service
if [ "${1:-}" != "--no-start" ]; then
    systemctl restart appliance.service
    systemctl --no-pager status appliance.service
fi
echo "installed $unit; logs: journalctl -u appliance"
