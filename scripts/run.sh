#!/usr/bin/env bash
# The one command that runs bffgate on a fresh machine (Debian 12, root or sudo).
#
#   bash scripts/run.sh [extra bffgate args...]
#
# Installs the build prerequisites if missing, builds the release binary, generates
# throw-away keys when BFFGATE_COOKIE_KEY / BFFGATE_SESSION_KEY are unset, and starts
# bffgate with conf/bff.yaml (or $BFFGATE_CONFIG). No Redis is needed: the default
# session store is in memory.
#
# Note: conf/bff.yaml sets `cookie.secure: true`, so over plain HTTP a browser will not
# send the session cookie back; the proxy still starts and serves `auth: none` routes.
# Generated keys change on every start, so sessions do not survive a restart: set the
# two variables yourself (`bffgate --gen-key`) to keep them.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

APT_PACKAGES=(cmake pkg-config build-essential)

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo -n "$@"
    else echo "error: need root (or sudo) to run: $*" >&2; return 1
    fi
}

missing=()
for p in "${APT_PACKAGES[@]}"; do
    if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" != "install ok installed" ]; then
        missing+=("$p")
    fi
done
for c in cmake pkg-config cc; do
    command -v "$c" >/dev/null 2>&1 || missing+=("(command $c)")
done
if [ "${#missing[@]}" -ne 0 ]; then
    echo "run.sh: installing ${APT_PACKAGES[*]} (missing: ${missing[*]})" >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        --no-install-recommends "${APT_PACKAGES[@]}"
fi

echo "run.sh: cargo build --release" >&2
cargo build --release --bin bffgate

gen_key() {
    if command -v openssl >/dev/null 2>&1; then
        openssl rand -base64 32
    else
        head -c32 /dev/urandom | base64
    fi
}
if [ -z "${BFFGATE_COOKIE_KEY:-}" ]; then
    BFFGATE_COOKIE_KEY="$(gen_key)"
    echo "run.sh: BFFGATE_COOKIE_KEY unset: generated a throw-away key" >&2
fi
if [ -z "${BFFGATE_SESSION_KEY:-}" ]; then
    BFFGATE_SESSION_KEY="$(gen_key)"
    echo "run.sh: BFFGATE_SESSION_KEY unset: generated a throw-away key" >&2
fi
export BFFGATE_COOKIE_KEY BFFGATE_SESSION_KEY

CONFIG="${BFFGATE_CONFIG:-conf/bff.yaml}"
echo "run.sh: starting target/release/bffgate --config $CONFIG" >&2
exec target/release/bffgate --config "$CONFIG" "$@"
