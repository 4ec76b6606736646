#!/usr/bin/env bash
# Install the appliance as a systemd service: a dedicated system user, the home
# folder, the configuration and the unit file, then enable and start it.
# Run as root from the repository: scripts/install-service.sh [--no-start]
# scripts/install-service.sh --print-unit writes the unit to stdout and exits.
# scripts/install-service.sh --check runs the path, location and access checks
# of an install and exits: 0 when they pass, 1 otherwise.
# Settings (environment): APPLIANCE_USER (appliance), APPLIANCE_SERVICE_HOME
# (/var/lib/edge-appliance), APPLIANCE_CONFIG_DIR (/etc/edge-appliance),
# APPLIANCE_PREFIX (the repository; it must contain .venv, see README).
# APPLIANCE_HOME is not read, because the README exports it for the demo.
set -euo pipefail
cd "$(dirname "$0")/.."

user="${APPLIANCE_USER:-appliance}"
home="${APPLIANCE_SERVICE_HOME:-/var/lib/edge-appliance}"
config_dir="${APPLIANCE_CONFIG_DIR:-/etc/edge-appliance}"
prefix="${APPLIANCE_PREFIX:-$(pwd)}"
unit=/etc/systemd/system/appliance.service
notes=1 # file descriptor of notes: stdout, or stderr while the unit is printed

render_unit() {
    sed -e "s|/opt/edge-appliance|$prefix|g" \
        -e "s|/var/lib/edge-appliance|$home|g" \
        -e "s|/etc/edge-appliance|$config_dir|g" \
        -e "s|^User=appliance|User=$user|" \
        -e "s|^Group=appliance|Group=$user|" \
        systemd/appliance.service
}

# The unit hides these folders from the service: ProtectHome=yes hides the
# first three, PrivateTmp=yes the next two, and PrivateDevices=yes gives it a
# /dev of its own.
hidden_dirs=(/home /root /run/user /tmp /var/tmp /dev)

# Print the folder of hidden_dirs that contains path $1, or nothing.
hidden_dir_of() {
    local dir
    for dir in "${hidden_dirs[@]}"; do
        case "$1/" in "$dir"/*)
            echo "$dir"
            return
            ;;
        esac
    done
}

note() {
    echo "note: $*" >&"$notes"
}

# Reject path $2, named $1 in the message, unless the unit can carry it as it
# is: absolute, and without spaces or characters that systemd or sed would
# read as special.
check_path() {
    case "$2" in
    /*) ;;
    *)
        echo "error: $1 '$2' is a relative path; give an absolute one, such" \
            "as /var/lib/edge-appliance" >&2
        return 1
        ;;
    esac
    if ! [[ "$2" =~ ^/[A-Za-z0-9._@+/-]*$ ]]; then
        echo "error: $1 '$2' contains a space or a character other than" \
            "letters, digits and . _ @ + - /, which the unit file would read" \
            "differently; choose a path without them" >&2
        return 1
    fi
}

# Reject a service home, config folder or repository path the unit cannot use.
check_paths() {
    local failed=0
    if [ -n "${APPLIANCE_HOME:-}" ] && [ "$APPLIANCE_HOME" != "$home" ]; then
        note "APPLIANCE_HOME ($APPLIANCE_HOME) is not read by this script;" \
            "the service home is APPLIANCE_SERVICE_HOME ($home)"
    fi
    check_path "the service home (APPLIANCE_SERVICE_HOME)" "$home" || failed=1
    check_path "the config folder (APPLIANCE_CONFIG_DIR)" "$config_dir" || failed=1
    check_path "the repository (APPLIANCE_PREFIX)" "$prefix" || failed=1
    # The name goes into the unit file through sed and into useradd.
    if ! [[ "$user" =~ ^[a-z_][a-z0-9_-]{0,31}$ ]]; then
        echo "error: the service user (APPLIANCE_USER) '$user' is not a system" \
            "user name: use up to 32 lowercase letters, digits, _ and -," \
            "starting with a letter or _, such as appliance" >&2
        failed=1
    fi
    return $failed
}

# Print the [storage] home of config file $1, as written in it.
config_home() {
    sed -n 's/^home *= *"\(.*\)".*$/\1/p' "$1" | head -n 1
}

# Reject a home or config folder the service cannot use, and note a config
# file whose home differs from the unit's.
check_home_and_config() {
    local failed=0 dir path written
    for path in "$home" "$config_dir"; do
        dir=$(hidden_dir_of "$path")
        [ -z "$dir" ] && continue
        echo "error: $path is under $dir, which the unit hides from the" \
            "service (ProtectHome, PrivateTmp, PrivateDevices); choose a path" \
            "such as /var/lib/edge-appliance or /etc/edge-appliance" >&2
        failed=1
    done
    if [ -e "$home" ] && [ ! -d "$home" ]; then
        echo "error: the service home $home is a file, not a folder" >&2
        failed=1
    fi
    if [ -e "$config_dir" ] && [ ! -d "$config_dir" ]; then
        echo "error: the config folder $config_dir is a file, not a folder" >&2
        failed=1
    fi
    if [ -f "$config_dir/config.toml" ]; then
        written=$(config_home "$config_dir/config.toml")
        if [ "$written" != "$home" ]; then
            note "$config_dir/config.toml sets [storage] home = \"$written\"," \
                "but the unit sets APPLIANCE_HOME=$home; commands run with" \
                "only APPLIANCE_CONFIG read the file's home, so set" \
                "home = \"$home\" in it"
        fi
    else
        note "$config_dir/config.toml does not exist yet; the install" \
            "copies config.toml there with home = \"$home\""
    fi
    return $failed
}

# Render the unit to a temporary file and run systemd-analyze verify on it.
verify_unit() {
    local folder status=0
    if ! command -v systemd-analyze >/dev/null; then
        note "systemd-analyze is missing, so the unit is not verified"
        return 0
    fi
    folder=$(mktemp -d)
    render_unit >"$folder/appliance.service"
    systemd-analyze verify "$folder/appliance.service" || status=1
    rm -r "$folder"
    if [ $status -ne 0 ]; then
        echo "error: systemd-analyze verify rejects the unit; nothing was" \
            "changed" >&2
    fi
    return $status
}

# Reject a repository, venv or interpreter that the unit hides from the service.
check_locations() {
    local python="$prefix/.venv/bin/python" failed=0 base="" what path dir
    if [ ! -x "$python" ]; then
        echo "error: $python not found; create the venv first (see README," \
            "\"Install as a service\")" >&2
        return 1
    fi
    if [ -f "$prefix/.venv/pyvenv.cfg" ]; then
        base=$(sed -n 's/^home *= *//p' "$prefix/.venv/pyvenv.cfg")
    fi
    for what in repository venv python base; do
        case $what in
        repository) path=$(readlink -f "$prefix") ;;
        venv) path=$(readlink -f "$prefix/.venv") ;;
        python) path=$(readlink -f "$python") what="venv's python" ;;
        base)
            [ -n "$base" ] || continue
            path=$(readlink -f "$base") what="python home of the venv"
            ;;
        esac
        dir=$(hidden_dir_of "$path")
        [ -z "$dir" ] && continue
        echo "error: the $what $path is under $dir, which the unit hides" \
            "from the service (ProtectHome, PrivateTmp, PrivateDevices); clone" \
            "the repository to a folder such as /opt/edge-appliance and create" \
            "its venv from a system python such as /usr/bin/python3 (see" \
            "README, \"Install as a service\")" >&2
        failed=1
    done
    return $failed
}

# Reject a venv the service user cannot run or import the appliance from.
check_user_access() {
    local python="$prefix/.venv/bin/python" output
    if ! id -u "$user" >/dev/null 2>&1; then
        echo "note: user $user does not exist yet, so its access is checked" \
            "after the install creates it"
        return 0
    fi
    if [ "$(id -u)" -ne 0 ] && [ "$(id -un)" != "$user" ]; then
        echo "note: the access of user $user is checked only as root"
        return 0
    fi
    if ! command -v runuser >/dev/null; then
        echo "note: runuser (util-linux) is missing, so the access of user" \
            "$user is not checked"
        return 0
    fi
    if output=$(cd / && runuser -u "$user" -- "$python" -c "import appliance" \
        2>&1); then
        return 0
    fi
    echo "error: user $user cannot run $python -c 'import appliance':" \
        "$(printf '%s\n' "$output" | tail -n 1); make the repository, the venv" \
        "and the python it was made from readable by $user, such as with" \
        "chmod -R o+rX on each, or move them (see README, \"Install as a" \
        "service\")" >&2
    return 1
}

case "${1:-}" in
--print-unit)
    notes=2
    check_paths || exit 1
    render_unit
    exit 0
    ;;
--check)
    check_paths || exit 1
    status=0
    check_home_and_config || status=1
    check_locations || status=1
    check_user_access || status=1
    [ $status -ne 0 ] || echo "ok: $prefix passes the checks for user $user"
    exit $status
    ;;
esac
if [ "$(id -u)" -ne 0 ]; then
    echo "error: run as root (it creates a user and writes $unit)" >&2
    exit 1
fi
# Every check that needs no change runs before the first change.
check_paths
check_home_and_config
check_locations
verify_unit

id -u "$user" >/dev/null 2>&1 ||
    useradd --system --user-group --home-dir "$home" \
        --shell /usr/sbin/nologin "$user"
check_user_access
install -d -o "$user" -g "$user" -m 0750 "$home"
install -d -m 0755 "$config_dir"
if [ ! -f "$config_dir/config.toml" ]; then
    # The copy's home is the service home, so commands run with only
    # APPLIANCE_CONFIG read the same home as the service.
    sed "0,/^home *=.*/s||home = \"$home\"|" config.toml >"$config_dir/config.toml"
    chmod 0644 "$config_dir/config.toml"
fi

render_unit >"$unit"
systemctl daemon-reload
systemctl enable appliance.service
if [ "${1:-}" != "--no-start" ]; then
    systemctl restart appliance.service
    systemctl --no-pager status appliance.service
fi
echo "installed $unit; logs: journalctl -u appliance"
