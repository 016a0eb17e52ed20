#!/usr/bin/env bash
# The one command that installs everything the tests need and runs them all.
#
#   bash scripts/test.sh
#
# Works on a fresh Debian 12 machine as root (sudo is used only if present and not
# root). Repeated runs skip the apt step when every package is already installed.
# CI runs this through .ci/run with CI=true and no stdin.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

section() { printf '\n==== %s ====\n' "$*"; }

# ---------------------------------------------------------------------------
# System packages
# ---------------------------------------------------------------------------
APT_PACKAGES=(cmake redis-server redis-tools pkg-config build-essential chromium python3 python3-pip openssl)
# Commands checked besides dpkg, so a machine with the tools from elsewhere passes too.
NEEDED_COMMANDS=(cmake redis-server redis-cli pkg-config cc make chromium python3 openssl)

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo -n "$@"
    else echo "error: need root (or sudo) to run: $*" >&2; return 1
    fi
}

# apt_install PKG...: installs the packages (one `apt-get update` first) without letting
# their maintainer scripts start services (redis-server would otherwise start a system
# instance; the tests start their own and must not rely on one).
apt_install() {
    local policy=/usr/sbin/policy-rc.d created_policy=0
    if [ ! -e "$policy" ]; then
        as_root sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod 755 $policy"
        created_policy=1
    fi
    local rc=0
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q || rc=$?
    if [ "$rc" -eq 0 ]; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
            --no-install-recommends "$@" || rc=$?
    fi
    if [ "$created_policy" -eq 1 ]; then as_root rm -f "$policy"; fi
    return "$rc"
}

section "system packages"
missing=()
for p in "${APT_PACKAGES[@]}"; do
    if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" != "install ok installed" ]; then
        missing+=("$p")
    fi
done
for c in "${NEEDED_COMMANDS[@]}"; do
    command -v "$c" >/dev/null 2>&1 || { missing+=("(command $c)"); }
done
if [ "${#missing[@]}" -eq 0 ]; then
    echo "all present: ${APT_PACKAGES[*]}"
else
    echo "missing: ${missing[*]}; installing ${APT_PACKAGES[*]}"
    apt_install "${APT_PACKAGES[@]}"
fi

# ---------------------------------------------------------------------------
# >>> FUTURE TEST DEPENDENCIES GO HERE <<<
# Node packages of the end-to-end tests: the OpenID provider (tests/provider,
# oidc-provider) and the real-browser test's driver (tests/browser, playwright-core,
# which drives Debian's `chromium` from APT_PACKAGES above and downloads no browser).
# `npm ci` runs only when node_modules is missing or package.json / package-lock.json
# changed since the last install (a stamp in node_modules records their hash).
# Keep each step idempotent and fast when already installed.
# ---------------------------------------------------------------------------
section "node packages (tests/provider, tests/browser)"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "error: Node.js >= 20 with npm is needed by the end-to-end tests (node: $(command -v node || echo missing), npm: $(command -v npm || echo missing))" >&2
    exit 1
fi
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" -lt 20 ]; then
    echo "error: Node.js >= 20 is needed by the end-to-end tests, found $(node --version)" >&2
    exit 1
fi
echo "node $(node --version), npm $(npm --version)"

# npm_ci DIR: `npm ci` in DIR unless its node_modules matches package(-lock).json.
npm_ci() {
    local dir="$1" stamp="$1/node_modules/.bffgate-npm-ci.stamp" want
    want="$(cat "$dir/package.json" "$dir/package-lock.json" | sha256sum | cut -d' ' -f1)"
    if [ -d "$dir/node_modules" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        echo "$dir: node_modules up to date"
        return 0
    fi
    echo "$dir: npm ci"
    (cd "$dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
    echo "$want" > "$stamp"
}
npm_ci tests/provider
npm_ci tests/browser
chromium --version 2>/dev/null || { echo "error: chromium does not run" >&2; exit 1; }

# Helm's template engine for the Helm chart test (tests/deploy/helm.rs): no helm binary is
# packaged for apt, PyPI or npm, but PyPI's helm-python-sdk ships Helm v4's Go SDK as a
# shared library; scripts/helm-template.py drives it like `helm template`. Installed with
# `pip --target` into a cache folder outside the checkout, once per version.
section "helm engine (helm-python-sdk)"
HELM_SDK_VERSION=0.2.2
export BFFGATE_HELM_SDK="${XDG_CACHE_HOME:-$HOME/.cache}/bffgate/helm-sdk-$HELM_SDK_VERSION"
if PYTHONPATH="$BFFGATE_HELM_SDK" python3 -c 'import helm_python' 2>/dev/null; then
    echo "present: $BFFGATE_HELM_SDK"
else
    rm -rf "$BFFGATE_HELM_SDK.tmp"
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps \
        --target "$BFFGATE_HELM_SDK.tmp" "helm-python-sdk==$HELM_SDK_VERSION"
    rm -rf "$BFFGATE_HELM_SDK"
    mv "$BFFGATE_HELM_SDK.tmp" "$BFFGATE_HELM_SDK"
    PYTHONPATH="$BFFGATE_HELM_SDK" python3 -c 'import helm_python' \
        || { echo "error: helm-python-sdk does not import" >&2; exit 1; }
    echo "installed: $BFFGATE_HELM_SDK"
fi

section "toolchain"
cargo --version
rustc --version
if cargo nextest --version >/dev/null 2>&1; then
    HAVE_NEXTEST=1
    cargo nextest --version | head -n1
else
    HAVE_NEXTEST=0
    echo "cargo-nextest not found: falling back to cargo test"
fi
redis-server --version

section "cargo fmt --check"
cargo fmt --all --check

section "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

# Both test runs always happen; the script fails at the end if either failed. Doctests
# run first so the test runner's summary is the last thing printed.
failed=()

section "cargo test --doc (nextest does not run doctests)"
cargo test --doc || failed+=("doctests")

if [ "$HAVE_NEXTEST" -eq 1 ]; then
    section "cargo nextest run --no-fail-fast"
    cargo nextest run --no-fail-fast || failed+=("nextest")
else
    section "cargo test --all-targets --no-fail-fast"
    cargo test --all-targets --no-fail-fast || failed+=("cargo test")
fi

if [ "${#failed[@]}" -ne 0 ]; then
    section "FAILED: ${failed[*]}"
    exit 1
fi
section "all checks passed"
