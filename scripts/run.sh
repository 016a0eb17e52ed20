#!/usr/bin/env bash
# The one command that runs the whole bffgate demo on a fresh machine (Debian 12, root or
# sudo; Node.js >= 20 and a Rust toolchain present):
#
#   bash scripts/run.sh [extra bffgate args...]
#
# It installs what is missing (cmake, pkg-config, build-essential; the OpenID provider's
# npm packages), builds the release binary, and starts, all on loopback:
#
#   OpenID provider  http://127.0.0.1:9000   tests/provider (oidc-provider), client bff-demo
#   example API      http://127.0.0.1:3002   examples/demo/api.mjs (verifies the bearer token)
#   example SPA      http://localhost:3000   examples/demo/spa-server.mjs
#   bffgate          http://localhost:8080   conf/demo.yaml, sessions in memory
#   metrics          http://127.0.0.1:9090/metrics
#
# then prints the URL to open and the demo user's credentials (alice / wonderland).
# Ctrl-C stops everything it started. The ports are fixed (conf/demo.yaml names them);
# the script stops with a message if one is taken.
#
# BFFGATE_COOKIE_KEY, BFFGATE_SESSION_KEY (32-byte base64 keys, `bffgate --gen-key`) and
# BFFGATE_CLIENT_SECRET are generated when unset, so sessions do not survive a restart
# unless you set them. The SPA and bffgate are same-site origins on localhost, where
# browsers accept the `Secure` session cookie over plain HTTP.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$(pwd)"

PROVIDER_PORT=9000
API_PORT=3002
SPA_PORT=3000
BFF_PORT=8080
METRICS_PORT=9090
CONFIG=conf/demo.yaml
LOG_DIR="$ROOT/target/demo"

say() { printf 'run.sh: %s\n' "$*" >&2; }
die() { printf 'run.sh: error: %s\n' "$*" >&2; exit 1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo -n "$@"
    else echo "error: need root (or sudo) to run: $*" >&2; return 1
    fi
}

# ---------------------------------------------------------------------------
# Prerequisites
# ---------------------------------------------------------------------------
APT_PACKAGES=(cmake pkg-config build-essential)
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
    say "installing ${APT_PACKAGES[*]} (missing: ${missing[*]})"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        --no-install-recommends "${APT_PACKAGES[@]}"
fi

command -v cargo >/dev/null 2>&1 \
    || die "cargo not found: install Rust (https://rustup.rs), then run this again"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    die "Node.js >= 20 with npm is needed (the OpenID provider and the example servers are Node programs); Debian 12's own nodejs is too old: install Node.js 20 or 22 (e.g. from nodejs.org or NodeSource)"
fi
node_major="$(node -p 'process.versions.node.split(".")[0]')"
[ "$node_major" -ge 20 ] || die "Node.js >= 20 is needed, found $(node --version)"

# Is anything listening on 127.0.0.1:PORT (or on every address, or on [::1]:PORT, which
# a browser may try first for "localhost")?
port_taken() {
    local port="$1"
    if command -v ss >/dev/null 2>&1; then
        [ -n "$(ss -Hltn "sport = :$port" 2>/dev/null)" ]
    else
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
    fi
}
check_ports() {
    local taken=()
    for entry in "OpenID provider:$PROVIDER_PORT" "example API:$API_PORT" "example SPA:$SPA_PORT" \
                 "bffgate:$BFF_PORT" "bffgate metrics:$METRICS_PORT"; do
        port_taken "${entry##*:}" && taken+=("${entry##*:} (${entry%:*})")
    done
    if [ "${#taken[@]}" -ne 0 ]; then
        die "port(s) already in use: ${taken[*]}. Stop whatever listens there (ss -ltnp shows it; an earlier run.sh?) and run this again."
    fi
}
check_ports

# npm ci in tests/provider unless node_modules matches package(-lock).json (as scripts/test.sh).
npm_ci() {
    local dir="$1" stamp="$1/node_modules/.bffgate-npm-ci.stamp" want
    want="$(cat "$dir/package.json" "$dir/package-lock.json" | sha256sum | cut -d' ' -f1)"
    if [ -d "$dir/node_modules" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        return 0
    fi
    say "npm ci in $dir"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$want" > "$stamp"
}
npm_ci tests/provider

say "cargo build --release --bin bffgate"
cargo build --release --bin bffgate
BIN="$ROOT/target/release/bffgate"

# ---------------------------------------------------------------------------
# Secrets
# ---------------------------------------------------------------------------
for var in BFFGATE_COOKIE_KEY BFFGATE_SESSION_KEY BFFGATE_CLIENT_SECRET; do
    if [ -z "${!var:-}" ]; then
        printf -v "$var" '%s' "$("$BIN" --gen-key)"
        say "$var unset: generated a throw-away one"
    fi
done
export BFFGATE_COOKIE_KEY BFFGATE_SESSION_KEY BFFGATE_CLIENT_SECRET

# ---------------------------------------------------------------------------
# Start everything; stop everything on exit
# ---------------------------------------------------------------------------
mkdir -p "$LOG_DIR"
declare -A PIDS=()   # name -> pid, only processes this script started

cleanup() {
    trap - EXIT INT TERM
    [ "${#PIDS[@]}" -eq 0 ] && return 0
    say "stopping: ${!PIDS[*]}"
    local name pid
    for name in "${!PIDS[@]}"; do
        kill -TERM "${PIDS[$name]}" 2>/dev/null || true
    done
    for _ in $(seq 1 50); do
        local alive=0
        for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ "$alive" -eq 0 ] && break
        sleep 0.1
    done
    for name in "${!PIDS[@]}"; do
        if kill -0 "${PIDS[$name]}" 2>/dev/null; then
            say "$name (pid ${PIDS[$name]}) did not stop: SIGKILL"
            kill -KILL "${PIDS[$name]}" 2>/dev/null || true
        fi
    done
    wait 2>/dev/null || true
    PIDS=()
    say "stopped"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The last lines of a log, indented, for error messages.
log_tail() { tail -n 20 "$1" 2>/dev/null | sed 's/^/    /' >&2 || true; }

# alive NAME: fails with its log if the process has exited.
alive() {
    local name="$1"
    if ! kill -0 "${PIDS[$name]}" 2>/dev/null; then
        say "$name exited; the end of $LOG_DIR/$name.log:"
        log_tail "$LOG_DIR/$name.log"
        unset "PIDS[$name]"
        exit 1
    fi
}

# http_status URL: the status code, or 000 if nothing answered (curl if present, else node).
http_status() {
    if command -v curl >/dev/null 2>&1; then
        curl -s -o /dev/null -m 2 --noproxy '*' -w '%{http_code}' "$1" || true
    else
        node -e 'fetch(process.argv[1], { redirect: "manual", signal: AbortSignal.timeout(2000) })
            .then((r) => console.log(r.status), () => console.log("000"))' "$1"
    fi
}

# wait_http NAME URL STATUS: up to 20 s for URL to answer STATUS while NAME runs.
wait_http() {
    local name="$1" url="$2" want="$3" got=000
    for _ in $(seq 1 100); do
        alive "$name"
        got="$(http_status "$url")"
        [ "$got" = "$want" ] && return 0
        sleep 0.2
    done
    say "$name did not answer $want at $url within 20 s (last: $got); the end of $LOG_DIR/$name.log:"
    log_tail "$LOG_DIR/$name.log"
    exit 1
}

unset HTTP_PROXY http_proxy HTTPS_PROXY https_proxy ALL_PROXY all_proxy

# The OpenID provider: one confidential client for bffgate, demo user alice / wonderland.
PROVIDER_SETTINGS="$(node -e '
const [port, secret] = process.argv.slice(1);
console.log(JSON.stringify({
  host: "127.0.0.1",
  port: Number(port),
  access_token_ttl: 300,
  client: {
    client_id: "bff-demo",
    client_secret: secret,
    redirect_uris: ["http://localhost:8080/bff/callback"],
    post_logout_redirect_uris: ["http://localhost:3000/"],
    backchannel_logout_uri: "http://localhost:8080/bff/backchannel-logout",
  },
}));' "$PROVIDER_PORT" "$BFFGATE_CLIENT_SECRET")"
say "starting the OpenID provider on 127.0.0.1:$PROVIDER_PORT"
node tests/provider/provider.mjs "$PROVIDER_SETTINGS" >"$LOG_DIR/provider.log" 2>&1 </dev/null &
PIDS[provider]=$!
for _ in $(seq 1 100); do
    alive provider
    grep -q '^READY ' "$LOG_DIR/provider.log" && break
    sleep 0.2
done
grep -q '^READY ' "$LOG_DIR/provider.log" || { say "the provider did not start:"; log_tail "$LOG_DIR/provider.log"; exit 1; }

say "starting the example API on 127.0.0.1:$API_PORT"
PORT=$API_PORT ISSUER="http://127.0.0.1:$PROVIDER_PORT" CLIENT_ID=bff-demo \
    CLIENT_SECRET="$BFFGATE_CLIENT_SECRET" \
    node examples/demo/api.mjs >"$LOG_DIR/api.log" 2>&1 </dev/null &
PIDS[api]=$!

say "starting the example SPA on localhost:$SPA_PORT"
PORT=$SPA_PORT BFFGATE_URL="http://localhost:$BFF_PORT" \
    node examples/demo/spa-server.mjs >"$LOG_DIR/spa.log" 2>&1 </dev/null &
PIDS[spa]=$!

say "starting bffgate on localhost:$BFF_PORT ($CONFIG)"
"$BIN" --config "$CONFIG" "$@" > >(tee "$LOG_DIR/bffgate.log") 2>&1 </dev/null &
PIDS[bffgate]=$!

wait_http api "http://127.0.0.1:$API_PORT/" 401
wait_http spa "http://127.0.0.1:$SPA_PORT/config.js" 200
wait_http bffgate "http://127.0.0.1:$BFF_PORT/readyz" 200

cat >&2 <<EOF

================================================================================
  bffgate demo is running.

  Open        http://localhost:$SPA_PORT
  Log in as   alice / wonderland

  bffgate     http://localhost:$BFF_PORT   (agent: /bff/login, /bff/session, ...; API: /api)
  metrics     http://127.0.0.1:$METRICS_PORT/metrics
  provider    http://127.0.0.1:$PROVIDER_PORT  (discovery: /.well-known/openid-configuration)
  logs        $LOG_DIR/{bffgate,provider,api,spa}.log

  Stop with Ctrl-C.
================================================================================

EOF

# Run until Ctrl-C, or until one of them exits (then stop the others).
set +e
wait -n "${PIDS[@]}"
status=$?
set -e
for name in "${!PIDS[@]}"; do
    if ! kill -0 "${PIDS[$name]}" 2>/dev/null; then
        say "$name exited unexpectedly (status $status); the end of $LOG_DIR/$name.log:"
        log_tail "$LOG_DIR/$name.log"
        unset "PIDS[$name]"
    fi
done
exit 1
