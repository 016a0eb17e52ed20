#!/usr/bin/env bash
# Hot-path benchmark for bffgate: see bench/README.md.
#
#   bash bench/run.sh [--record]
#
# Measures, in one run, through one bffgate process (two for case f) and ONE echo upstream:
#   a  bffgate, `auth: none` route
#   b  bffgate, `auth: required` route, real session in a real Redis (valid cookie)
#   c  a bare Pingora passthrough proxy (bench/passthrough.rs) to the same upstream
#   d  nginx (Debian's, one worker, proxy_pass with upstream keep-alive) to the same upstream
#   e  as b, with a DPoP-bound session: `Authorization: DPoP` and a fresh ES256 proof signed
#      per request (RFC 9449)
#   f  as b, through a second bffgate process with the session cache off (one Redis round
#      trip per request)
#   g  the passthrough of c on Pingora's no-steal runtime (bffgate's default since
#      `server.work_stealing` became `false`; c keeps Pingora's default, work stealing)
#   h  as g, built with mimalloc (bench/passthrough_mimalloc.rs): bffgate's runtime and
#      allocator, the strictest reference
# and prints requests/s, p50 and p99 latency and the proxy's CPU per request for each, with
# every case's CPU per request as a ratio to the passthrough (c) and to nginx (d). Then an
# open-loop run at a fixed rate (oha, half of b's capacity unless BENCH_OPEN_RATE is set)
# against b and against the upstream directly: the p50/p99 that bffgate adds.
# --record also appends the table as a dated section to bench/RESULTS.md.
#
# Everything is on loopback; every load run is bounded by wrk's -d and by `timeout`.
# Only processes this script starts are stopped (by PID) when it exits.
#
# Environment (defaults in brackets):
#   BENCH_DURATION   measured seconds per case [10]
#   BENCH_WARMUP     warm-up seconds per case, discarded [2]
#   BENCH_CONNS      wrk connections [50]
#   BENCH_THREADS    wrk threads, at most 2 [1: wrk has one core, see README]
#   BENCH_ROUNDS     rounds of a,b,c; each metric is the median over rounds [1]
#   BENCH_PROXY_CPU  CPU for bffgate / passthrough [1]
#   BENCH_LOAD_CPU   CPU for wrk, echo upstream and redis [0]
#   BENCH_MAX_SECONDS refuse a plan whose load phases exceed this [110]
#   BENCH_OPEN_SECONDS  seconds of each open-loop run [10]; 0 skips the open-loop phase
#   BENCH_OPEN_RATE  open-loop requests/s [half of case b's measured req/s]
#   BENCH_SKIP_BUILD=1  use the existing target/release binaries
#   BENCH_KEEP=1     keep the temp dir (config, logs) after the run
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$(pwd)"

RECORD=0
for arg in "$@"; do
    case "$arg" in
        --record) RECORD=1 ;;
        -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
        *) echo "unknown argument: $arg (usage: bash bench/run.sh [--record])" >&2; exit 2 ;;
    esac
done

DURATION="${BENCH_DURATION:-10}"
WARMUP="${BENCH_WARMUP:-2}"
CONNS="${BENCH_CONNS:-50}"
THREADS="${BENCH_THREADS:-1}"
ROUNDS="${BENCH_ROUNDS:-1}"
PROXY_CPU="${BENCH_PROXY_CPU:-1}"
LOAD_CPU="${BENCH_LOAD_CPU:-0}"
MAX_SECONDS="${BENCH_MAX_SECONDS:-110}"
OPEN_SECONDS="${BENCH_OPEN_SECONDS:-10}"
OPEN_RATE="${BENCH_OPEN_RATE:-0}"

for v in DURATION WARMUP CONNS THREADS ROUNDS PROXY_CPU LOAD_CPU MAX_SECONDS OPEN_SECONDS OPEN_RATE; do
    [[ "${!v}" =~ ^[0-9]+$ ]] || { echo "BENCH_$v must be a whole number" >&2; exit 2; }
done
if [ "$THREADS" -lt 1 ] || [ "$THREADS" -gt 2 ]; then
    echo "BENCH_THREADS must be 1 or 2" >&2; exit 2
fi
if [ "$DURATION" -lt 1 ] || [ "$ROUNDS" -lt 1 ] || [ "$CONNS" -lt 1 ]; then
    echo "BENCH_DURATION, BENCH_ROUNDS and BENCH_CONNS must be at least 1" >&2; exit 2
fi
PLANNED=$(( ROUNDS * 8 * (DURATION + WARMUP) + 2 * OPEN_SECONDS ))
if [ "$PLANNED" -gt "$MAX_SECONDS" ]; then
    echo "plan is ${PLANNED}s of load (> BENCH_MAX_SECONDS=${MAX_SECONDS}); lower BENCH_DURATION/BENCH_ROUNDS or raise the cap" >&2
    exit 2
fi

log() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] ERROR: %s\n' "$*" >&2; exit 1; }

# --------------------------------------------------------------------------- tools
as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo -n "$@"
    else echo "need root (or sudo) to run: $*" >&2; return 1
    fi
}
need_pkgs=()
command -v wrk >/dev/null 2>&1 || need_pkgs+=(wrk)
command -v redis-server >/dev/null 2>&1 || need_pkgs+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need_pkgs+=(redis-tools)
command -v curl >/dev/null 2>&1 || need_pkgs+=(curl)
command -v taskset >/dev/null 2>&1 || need_pkgs+=(util-linux)
command -v cmake >/dev/null 2>&1 || need_pkgs+=(cmake)
command -v pkg-config >/dev/null 2>&1 || need_pkgs+=(pkg-config)
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
[ -x "$NGINX" ] || need_pkgs+=(nginx)
if [ "${#need_pkgs[@]}" -gt 0 ]; then
    log "installing ${need_pkgs[*]}"
    # Keep the redis-server package from starting a system instance (we start our own).
    created_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        as_root sh -c "printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d"
        created_policy=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need_pkgs[@]}"
    [ "$created_policy" -eq 0 ] || as_root rm -f /usr/sbin/policy-rc.d
fi

NCPU="$(nproc)"
if [ "$PROXY_CPU" -ge "$NCPU" ] || [ "$LOAD_CPU" -ge "$NCPU" ]; then
    die "need CPUs $PROXY_CPU and $LOAD_CPU but this machine has $NCPU (set BENCH_PROXY_CPU / BENCH_LOAD_CPU)"
fi
if [ "$PROXY_CPU" -eq "$LOAD_CPU" ]; then
    log "warning: proxy and load share CPU $PROXY_CPU: numbers mix proxy and load-generator cost"
fi
# Background processes are started with `taskset -c CPU prog` directly (taskset execs
# prog, so $! is prog's PID and cleanup can stop it by PID).
on_load_cpu() { taskset -c "$LOAD_CPU" "$@"; }

# --------------------------------------------------------------------------- build
if [ "${BENCH_SKIP_BUILD:-0}" != "1" ]; then
    log "cargo build --release (bffgate, echo_upstream, passthrough, passthrough_mimalloc, mksession)"
    cargo build --release --bin bffgate --example echo_upstream --example passthrough \
        --example passthrough_mimalloc --example mksession
fi
BIN="$ROOT/target/release"
for b in "$BIN/bffgate" "$BIN/examples/echo_upstream" "$BIN/examples/passthrough" "$BIN/examples/passthrough_mimalloc" "$BIN/examples/mksession"; do
    [ -x "$b" ] || die "missing $b (build failed or BENCH_SKIP_BUILD=1 without a build)"
done
# The open-loop load generator: oha, built once into target/bench-tools.
OHA="$ROOT/target/bench-tools/bin/oha"
if [ "$OPEN_SECONDS" -gt 0 ] && [ ! -x "$OHA" ]; then
    log "cargo install oha (open-loop load generator) into target/bench-tools"
    cargo install --locked --root "$ROOT/target/bench-tools" oha >&2
fi

# --------------------------------------------------------------------------- setup
# Other work on the machine (a cargo build, a test run) skews every number: note it.
LOADAVG_START="$(cut -d' ' -f1 /proc/loadavg)"
if awk -v l="$LOADAVG_START" 'BEGIN { exit !(l > 0.7) }'; then
    log "warning: load average is $LOADAVG_START before the run: something else is using the CPUs"
fi
WORK="$(mktemp -d "${TMPDIR:-/tmp}/bffgate-bench.XXXXXX")"
PIDS=()
cleanup() {
    local rc=$?
    # Stop, newest first, only what this script started.
    local i pid
    for (( i=${#PIDS[@]}-1; i>=0; i-- )); do
        pid="${PIDS[$i]}"
        kill -INT "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [ "${BENCH_KEEP:-0}" = "1" ] || [ "$rc" -ne 0 ]; then
        log "logs and config kept in $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A free loopback TCP port: random in 20000-59999, nothing listening there, not yet used.
USED_PORTS=" "
free_port() {
    local p
    for _ in $(seq 1 200); do
        p=$(( 20000 + RANDOM % 40000 ))
        case "$USED_PORTS" in *" $p "*) continue ;; esac
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            USED_PORTS="$USED_PORTS$p "
            echo "$p"; return 0
        fi
    done
    die "no free port found"
}
wait_port() { # wait_port PORT PID NAME: until something listens, or the process died
    local port="$1" pid="$2" name="$3"
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        kill -0 "$pid" 2>/dev/null || { tail -n 30 "$WORK/$name.log" >&2 || true; die "$name exited at start (log above)"; }
        sleep 0.1
    done
    tail -n 30 "$WORK/$name.log" >&2 || true
    die "$name did not listen on 127.0.0.1:$port within 10 s"
}

ECHO_PORT="$(free_port)"
REDIS_PORT="$(free_port)"
BFF_PORT="$(free_port)"
METRICS_PORT="$(free_port)"
PASS_PORT="$(free_port)"
NGINX_PORT="$(free_port)"
NOCACHE_PORT="$(free_port)"
PASS_NS_PORT="$(free_port)"
PASS_MI_PORT="$(free_port)"
NOCACHE_METRICS_PORT="$(free_port)"

gen_key() {
    if command -v openssl >/dev/null 2>&1; then openssl rand -base64 32
    else head -c32 /dev/urandom | base64; fi
}

CONFIG="$WORK/bench.yaml"
cat > "$CONFIG" <<YAML
# Generated by bench/run.sh: one proxy thread (pinned to CPU $PROXY_CPU), Redis sessions.
listen:
  - addr: 127.0.0.1:$BFF_PORT
metrics:
  addr: 127.0.0.1:$METRICS_PORT
server:
  threads: 1
  grace_period_seconds: 0
  graceful_shutdown_timeout_seconds: 1
  pid_file: $WORK/bffgate.pid
  upgrade_sock: $WORK/bffgate_upgrade.sock
agent:
  base_path: /bff
  allowed_origins: [http://127.0.0.1:$BFF_PORT]
cookie:
  name: bff_session
  path: /
  same_site: strict
  secure: false
  keys:
    - { id: bench, secret: "$(gen_key)" }
session:
  store:
    redis:
      url: redis://127.0.0.1:$REDIS_PORT
      key_prefix: "bench:"
      timeout: 1s
  at_rest_key: "$(gen_key)"
  idle_timeout: 30m
  absolute_timeout: 12h
access_log: false
routes:
  - name: public
    match: { path_prefix: /api/public }
    upstreams: [http://127.0.0.1:$ECHO_PORT]
    auth: none
  - name: private
    match: { path_prefix: /api/private }
    upstreams: [http://127.0.0.1:$ECHO_PORT]
    auth: required
YAML
# Case f: the same sessions (same keys, prefix and Redis) with the session cache off.
CONFIG_NOCACHE="$WORK/bench-nocache.yaml"
sed -e "s/127.0.0.1:$BFF_PORT/127.0.0.1:$NOCACHE_PORT/g" \
    -e "s/127.0.0.1:$METRICS_PORT/127.0.0.1:$NOCACHE_METRICS_PORT/" \
    -e "s#$WORK/bffgate.pid#$WORK/bffgate-nocache.pid#" \
    -e "s#$WORK/bffgate_upgrade.sock#$WORK/bffgate-nocache_upgrade.sock#" \
    -e 's/^      timeout: 1s$/      timeout: 1s\n      cache: { window: 0 }/' \
    "$CONFIG" > "$CONFIG_NOCACHE"
grep -q 'window: 0' "$CONFIG_NOCACHE" || die "could not write the cache-off config"

log "redis on 127.0.0.1:$REDIS_PORT (CPU $LOAD_CPU)"
taskset -c "$LOAD_CPU" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
    --daemonize no --dir "$WORK" --logfile "$WORK/redis.log" >/dev/null 2>&1 &
PIDS+=($!); wait_port "$REDIS_PORT" "$!" redis

log "echo upstream on 127.0.0.1:$ECHO_PORT (CPU $LOAD_CPU)"
taskset -c "$LOAD_CPU" "$BIN/examples/echo_upstream" "127.0.0.1:$ECHO_PORT" >"$WORK/echo.log" 2>&1 &
PIDS+=($!); wait_port "$ECHO_PORT" "$!" echo

log "bffgate on 127.0.0.1:$BFF_PORT (CPU $PROXY_CPU, 1 thread)"
RUST_LOG="${RUST_LOG:-warn}" taskset -c "$PROXY_CPU" "$BIN/bffgate" --config "$CONFIG" >"$WORK/bffgate.log" 2>&1 &
BFF_PID=$!; PIDS+=("$BFF_PID"); wait_port "$BFF_PORT" "$BFF_PID" bffgate

log "bffgate with the session cache off on 127.0.0.1:$NOCACHE_PORT (CPU $PROXY_CPU, 1 thread)"
RUST_LOG="${RUST_LOG:-warn}" taskset -c "$PROXY_CPU" "$BIN/bffgate" --config "$CONFIG_NOCACHE" >"$WORK/bffgate-nocache.log" 2>&1 &
NOCACHE_PID=$!; PIDS+=("$NOCACHE_PID"); wait_port "$NOCACHE_PORT" "$NOCACHE_PID" bffgate-nocache

log "passthrough on 127.0.0.1:$PASS_PORT (CPU $PROXY_CPU, 1 thread)"
taskset -c "$PROXY_CPU" "$BIN/examples/passthrough" "127.0.0.1:$PASS_PORT" "127.0.0.1:$ECHO_PORT" 1 "$WORK" \
    >"$WORK/passthrough.log" 2>&1 &
PASS_PID=$!; PIDS+=("$PASS_PID"); wait_port "$PASS_PORT" "$PASS_PID" passthrough

log "passthrough, no-steal runtime, on 127.0.0.1:$PASS_NS_PORT (CPU $PROXY_CPU, 1 thread)"
PASSTHROUGH_WORK_STEALING=false taskset -c "$PROXY_CPU" "$BIN/examples/passthrough" "127.0.0.1:$PASS_NS_PORT" \
    "127.0.0.1:$ECHO_PORT" 1 "$WORK" >"$WORK/passthrough-nosteal.log" 2>&1 &
PASS_NS_PID=$!; PIDS+=("$PASS_NS_PID"); wait_port "$PASS_NS_PORT" "$PASS_NS_PID" passthrough-nosteal

log "passthrough, no-steal runtime and mimalloc, on 127.0.0.1:$PASS_MI_PORT (CPU $PROXY_CPU, 1 thread)"
PASSTHROUGH_WORK_STEALING=false taskset -c "$PROXY_CPU" "$BIN/examples/passthrough_mimalloc" \
    "127.0.0.1:$PASS_MI_PORT" "127.0.0.1:$ECHO_PORT" 1 "$WORK" >"$WORK/passthrough-mimalloc.log" 2>&1 &
PASS_MI_PID=$!; PIDS+=("$PASS_MI_PID"); wait_port "$PASS_MI_PORT" "$PASS_MI_PID" passthrough-mimalloc

log "nginx on 127.0.0.1:$NGINX_PORT (CPU $PROXY_CPU, one process)"
mkdir -p "$WORK/nginx"
cat > "$WORK/nginx.conf" <<NGINX
# Generated by bench/run.sh: the reference proxy, as lean as nginx gets for this job.
worker_processes 1;
error_log $WORK/nginx/error.log warn;
pid $WORK/nginx/nginx.pid;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    upstream echo {
        server 127.0.0.1:$ECHO_PORT;
        keepalive 64;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            proxy_pass http://echo;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
NGINX
# One process (no master): its PID is the process doing the work, for the CPU numbers.
taskset -c "$PROXY_CPU" "$NGINX" -p "$WORK/nginx" -c "$WORK/nginx.conf" -g 'daemon off; master_process off;' \
    >"$WORK/nginx.log" 2>&1 &
NGINX_PID=$!; PIDS+=("$NGINX_PID"); wait_port "$NGINX_PORT" "$NGINX_PID" nginx

log "creating the bench session in Redis"
COOKIE="$("$BIN/examples/mksession" "$CONFIG" 2>"$WORK/mksession.log")" \
    || { cat "$WORK/mksession.log" >&2; die "mksession failed"; }
COOKIE="$(printf '%s' "$COOKIE" | tail -n1 | tr -d '\r')"
[[ "$COOKIE" == bff_session=* ]] || die "mksession printed '$COOKIE', expected bff_session=..."
COOKIE_DPOP="$("$BIN/examples/mksession" "$CONFIG" --dpop 2>"$WORK/mksession-dpop.log")" \
    || { cat "$WORK/mksession-dpop.log" >&2; die "mksession --dpop failed"; }
COOKIE_DPOP="$(printf '%s' "$COOKIE_DPOP" | tail -n1 | tr -d '\r')"
SESSIONS_IN_REDIS="$(redis-cli -p "$REDIS_PORT" --raw dbsize)"
[ "$SESSIONS_IN_REDIS" -ge 1 ] || die "no key in the bench Redis after mksession"

URL_A="http://127.0.0.1:$BFF_PORT/api/public/items/1"
URL_B="http://127.0.0.1:$BFF_PORT/api/private/items/1"
URL_C="http://127.0.0.1:$PASS_PORT/api/public/items/1"
URL_G="http://127.0.0.1:$PASS_NS_PORT/api/public/items/1"
URL_H="http://127.0.0.1:$PASS_MI_PORT/api/public/items/1"
URL_D="http://127.0.0.1:$NGINX_PORT/api/public/items/1"
URL_F="http://127.0.0.1:$NOCACHE_PORT/api/private/items/1"
URL_DIRECT="http://127.0.0.1:$ECHO_PORT/api/private/items/1"

# --------------------------------------------------------------------------- sanity
status_of() { curl -s -o "$WORK/sanity.body" -w '%{http_code}' --max-time 5 "$@" || echo 000; }
s="$(status_of "$URL_A")"
[ "$s" = 200 ] || die "(a) $URL_A answered $s, expected 200"
s="$(status_of "$URL_B")"
[ "$s" = 401 ] || die "(b) $URL_B without cookie answered $s, expected 401"
s="$(status_of -H "Cookie: $COOKIE" "$URL_B")"
[ "$s" = 200 ] || die "(b) $URL_B with the session cookie answered $s, expected 200"
grep -qi 'bearer at-bench' "$WORK/sanity.body" \
    || die "(b) upstream did not receive 'Authorization: Bearer at-bench': $(head -c 400 "$WORK/sanity.body")"
s="$(status_of -H "Cookie: $COOKIE_DPOP" "$URL_B")"
[ "$s" = 200 ] || die "(e) $URL_B with the DPoP session's cookie answered $s, expected 200"
grep -qi 'dpop at-bench' "$WORK/sanity.body" \
    || die "(e) upstream did not receive 'Authorization: DPoP at-bench': $(head -c 400 "$WORK/sanity.body")"
s="$(status_of -H "Cookie: $COOKIE" "$URL_F")"
[ "$s" = 200 ] || die "(f) $URL_F with the session cookie answered $s, expected 200"
s="$(status_of "$URL_C")"
[ "$s" = 200 ] || die "(c) $URL_C answered $s, expected 200"
s="$(status_of "$URL_D")"
[ "$s" = 200 ] || die "(d) $URL_D answered $s, expected 200"
log "sanity ok: a=200, b=401 without cookie, b=200 with cookie (bearer forwarded), c=200, d=200, e=200 (DPoP forwarded), f=200"

# --------------------------------------------------------------------------- load
LUA="$WORK/report.lua"
cat > "$LUA" <<'LUA'
-- Prints one machine-readable line after the run; latencies in microseconds.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d p50_us=%.0f p99_us=%.0f mean_us=%.1f max_us=%.0f " ..
    "err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.mean, latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
LUA

CLK_TCK="$(getconf CLK_TCK)"
proc_cpu_ticks() { # utime+stime of a process (all threads)
    local stat; stat="$(cat "/proc/$1/stat")"; stat="${stat##*) }"
    awk '{ print $12 + $13 }' <<<"$stat"
}
redis_cmds() { # commands Redis has processed so far (each call adds one: its own INFO)
    redis-cli -p "$REDIS_PORT" info stats | awk -F: '/^total_commands_processed:/ { print $2 + 0 }'
}
cpu_busy_total() { # "busy total" jiffies of one CPU from /proc/stat
    awk -v c="cpu$1" '$1 == c { busy = $2 + $3 + $4 + $7 + $8; total = busy + $5 + $6; print busy, total }' /proc/stat
}

# run_wrk NAME SECONDS PROXY_PID URL [wrk args...]: prints "rps p50 p99 proxycpu loadcpu errors"
run_wrk() {
    local name="$1" secs="$2" pid="$3" url="$4"; shift 4
    local out="$WORK/wrk-$name.out"
    local t0 l0 l0t t1 l1 l1t
    local r0 r1
    r0="$(redis_cmds)"
    t0="$(proc_cpu_ticks "$pid")"; read -r l0 l0t < <(cpu_busy_total "$LOAD_CPU")
    on_load_cpu timeout --signal=INT --kill-after=5 $(( secs + 20 )) \
        wrk -t"$THREADS" -c"$CONNS" -d"${secs}s" --timeout 5s -s "$LUA" "$@" "$url" >"$out" 2>&1 \
        || { cat "$out" >&2; die "wrk failed for $name"; }
    t1="$(proc_cpu_ticks "$pid")"; read -r l1 l1t < <(cpu_busy_total "$LOAD_CPU")
    r1="$(redis_cmds)"
    local line; line="$(grep '^BENCH ' "$out" || true)"
    [ -n "$line" ] || { cat "$out" >&2; die "no result line from wrk for $name"; }
    awk -v ticks=$(( t1 - t0 )) -v hz="$CLK_TCK" -v lb=$(( l1 - l0 )) -v lt=$(( l1t - l0t )) -v rc=$(( r1 - r0 - 1 )) '
      { for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } }
      END {
        secs = v["duration_us"] / 1e6
        rps = v["requests"] / secs
        errs = v["err_connect"] + v["err_read"] + v["err_write"] + v["err_status"] + v["err_timeout"]
        proxy = 100 * ticks / hz / secs
        load = (lt > 0) ? 100 * lb / lt : 0
        cpu_us = (v["requests"] > 0) ? 1e6 * ticks / hz / v["requests"] : 0
        rpr = (v["requests"] > 0) ? rc / v["requests"] : 0
        printf "%.0f %.0f %.0f %.0f %.0f %d %.1f %d %.2f\n", rps, v["p50_us"], v["p99_us"], proxy, load, errs, cpu_us, v["requests"], rpr
      }' <<<"$line"
}

declare -A RES
CASES=(a b c d e f g h)
declare -A CASE_URL=([a]="$URL_A" [b]="$URL_B" [c]="$URL_C" [d]="$URL_D" [e]="$URL_B" [f]="$URL_F" [g]="$URL_G" [h]="$URL_H")
declare -A CASE_PID=([a]="$BFF_PID" [b]="$BFF_PID" [c]="$PASS_PID" [d]="$NGINX_PID" [e]="$BFF_PID" [f]="$NOCACHE_PID" [g]="$PASS_NS_PID" [h]="$PASS_MI_PID")
declare -A CASE_NAME=([a]="a  bffgate auth:none" [b]="b  bffgate auth:required+redis" [c]="c  pingora passthrough" [d]="d  nginx proxy_pass" [e]="e  as b, DPoP session" [f]="f  as b, session cache off" [g]="g  passthrough, no-steal runtime" [h]="h  as g, mimalloc")
case_args() {
    if [ "$1" = b ] || [ "$1" = f ]; then printf '%s\n' -H "Cookie: $COOKIE"; fi
    if [ "$1" = e ]; then printf '%s\n' -H "Cookie: $COOKIE_DPOP"; fi
}

log "load: ${CONNS} connections, ${THREADS} wrk thread(s), ${WARMUP}s warm-up + ${DURATION}s per case, ${ROUNDS} round(s) (~${PLANNED}s)"
for (( r=1; r<=ROUNDS; r++ )); do
    for c in "${CASES[@]}"; do
        mapfile -t extra < <(case_args "$c")
        if [ "$WARMUP" -gt 0 ]; then
            run_wrk "$c-warm$r" "$WARMUP" "${CASE_PID[$c]}" "${CASE_URL[$c]}" "${extra[@]}" >/dev/null
        fi
        res="$(run_wrk "$c-run$r" "$DURATION" "${CASE_PID[$c]}" "${CASE_URL[$c]}" "${extra[@]}")"
        RES[$c,$r]="$res"
        log "round $r case $c: $res  (rps p50us p99us proxy%cpu load%cpu errors cpu_us/req requests redis_cmds/req)"
    done
done

# Still alive and still the same processes?
kill -0 "$BFF_PID" 2>/dev/null || die "bffgate died during the run (see $WORK/bffgate.log)"
kill -0 "$PASS_PID" 2>/dev/null || die "passthrough died during the run"
kill -0 "$PASS_NS_PID" 2>/dev/null || die "the no-steal passthrough died during the run"
kill -0 "$PASS_MI_PID" 2>/dev/null || die "the mimalloc passthrough died during the run"
kill -0 "$NGINX_PID" 2>/dev/null || die "nginx died during the run (see $WORK/nginx/error.log)"

# --------------------------------------------------------------------------- report
median() { sort -n | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.1f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
declare -A M
for c in "${CASES[@]}"; do
    for f in 1 2 3 4 5 6 7 8 9; do
        M[$c,$f]="$(for (( r=1; r<=ROUNDS; r++ )); do awk -v f="$f" '{ print $f }' <<<"${RES[$c,$r]}"; done | median)"
    done
done
ratio() { awk -v x="$1" -v y="$2" 'BEGIN { if (y > 0) printf "%.3f", x / y; else print "n/a" }'; }
ms() { awk -v u="$1" 'BEGIN { printf "%.3f", u / 1000 }'; }

# --------------------------------------------------------------------------- open loop
# A fixed arrival rate (oha with latency correction: a slow answer does not slow the
# arrivals), the same against the upstream directly and through bffgate's authenticated
# route: the difference is what bffgate adds to a request's latency at that load.
OPEN=""
if [ "$OPEN_SECONDS" -gt 0 ]; then
    if [ "$OPEN_RATE" -eq 0 ]; then OPEN_RATE="$(awk -v r="${M[b,1]}" 'BEGIN { printf "%d", r / 2 }')"; fi
    # run_oha NAME URL [oha args...]: prints "p50_us p99_us requests non2xx"
    run_oha() {
        local name="$1" url="$2"; shift 2
        local out="$WORK/oha-$name.json"
        on_load_cpu timeout --signal=INT --kill-after=5 $(( OPEN_SECONDS + 30 )) \
            "$OHA" -z "${OPEN_SECONDS}s" -q "$OPEN_RATE" -c "$CONNS" --latency-correction \
            --no-tui --output-format json "$@" "$url" >"$out" 2>"$WORK/oha-$name.err" \
            || { cat "$WORK/oha-$name.err" >&2; die "oha failed for $name"; }
        python3 - "$out" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
p = d["latencyPercentiles"]
codes = d.get("statusCodeDistribution", {})
total = sum(codes.values())
print("%.0f %.0f %d %d" % (p["p50"] * 1e6, p["p99"] * 1e6, total, total - codes.get("200", 0)))
PY
    }
    log "open loop: ${OPEN_RATE} req/s for ${OPEN_SECONDS}s, direct then through b"
    run_oha direct-warm "$URL_DIRECT" >/dev/null
    OPEN_DIRECT="$(run_oha direct "$URL_DIRECT")"
    OPEN_B="$(run_oha b "$URL_B" -H "Cookie: $COOKIE")"
    log "open loop direct: $OPEN_DIRECT; b: $OPEN_B (p50us p99us requests non-200)"
    read -r od50 od99 odn oderr <<<"$OPEN_DIRECT"
    read -r ob50 ob99 obn oberr <<<"$OPEN_B"
    [ "$oderr" -eq 0 ] && [ "$oberr" -eq 0 ] || log "warning: non-200 answers in the open-loop runs"
    OPEN="$(printf -- '- open loop at %s req/s (%ss, oha with latency correction): direct p50 %s ms, p99 %s ms; through b p50 %s ms, p99 %s ms; **bffgate adds p50 %s ms, p99 %s ms** (%s + %s requests, %s non-200)' \
        "$OPEN_RATE" "$OPEN_SECONDS" "$(ms "$od50")" "$(ms "$od99")" "$(ms "$ob50")" "$(ms "$ob99")" \
        "$(ms $(( ob50 - od50 )))" "$(ms $(( ob99 - od99 )))" "$odn" "$obn" $(( oderr + oberr )))"
fi

TOTAL_ERRORS=0
for c in "${CASES[@]}"; do TOTAL_ERRORS=$(( TOTAL_ERRORS + ${M[$c,6]%.*} )); done

GIT_REV="$(git rev-parse --short HEAD 2>/dev/null || echo none)"
if [ "$GIT_REV" != none ] && [ -n "$(git status --porcelain -- src Cargo.toml Cargo.lock bench 2>/dev/null)" ]; then
    GIT_REV="$GIT_REV+dirty"
fi
CPU_MODEL="$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || echo unknown)"

table() {
    printf '| case | req/s | p50 ms | p99 ms | proxy CPU %% | proxy CPU µs/req | ÷ passthrough | ÷ nginx | load CPU %% | Redis cmds/req | errors |\n'
    printf '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n'
    for c in "${CASES[@]}"; do
        printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "${CASE_NAME[$c]}" "${M[$c,1]}" \
            "$(ms "${M[$c,2]}")" "$(ms "${M[$c,3]}")" "${M[$c,4]}" "${M[$c,7]}" \
            "$(ratio "${M[$c,7]}" "${M[c,7]}")" "$(ratio "${M[$c,7]}" "${M[d,7]}")" "${M[$c,5]}" "${M[$c,9]}" "${M[$c,6]}"
    done
    printf '\n'
    printf -- '- b/a: req/s %s, p50 %s, p99 %s, proxy CPU µs/req %s (the session: cookie unseal + session (cache or Redis) + bearer)\n' \
        "$(ratio "${M[b,1]}" "${M[a,1]}")" "$(ratio "${M[b,2]}" "${M[a,2]}")" "$(ratio "${M[b,3]}" "${M[a,3]}")" \
        "$(ratio "${M[b,7]}" "${M[a,7]}")"
    printf -- '- f/b: req/s %s, p50 %s, p99 %s, proxy CPU µs/req %s (the session cache off: one Redis round trip per request, over the cache)\n' \
        "$(ratio "${M[f,1]}" "${M[b,1]}")" "$(ratio "${M[f,2]}" "${M[b,2]}")" "$(ratio "${M[f,3]}" "${M[b,3]}")" \
        "$(ratio "${M[f,7]}" "${M[b,7]}")"
    printf -- '- e/b: req/s %s, p50 %s, p99 %s, proxy CPU µs/req %s (DPoP: a fresh ES256 proof per request, over bearer)\n' \
        "$(ratio "${M[e,1]}" "${M[b,1]}")" "$(ratio "${M[e,2]}" "${M[b,2]}")" "$(ratio "${M[e,3]}" "${M[b,3]}")" \
        "$(ratio "${M[e,7]}" "${M[b,7]}")"
    printf -- '- a/c: req/s %s, p50 %s, p99 %s, proxy CPU µs/req %s (bffgate itself over bare Pingora)\n' \
        "$(ratio "${M[a,1]}" "${M[c,1]}")" "$(ratio "${M[a,2]}" "${M[c,2]}")" "$(ratio "${M[a,3]}" "${M[c,3]}")" \
        "$(ratio "${M[a,7]}" "${M[c,7]}")"
    printf -- '- CPU per request, b/c %s, a/c %s, b/d %s, c/d %s (the product promise: b/c and a/c near 1)\n' \
        "$(ratio "${M[b,7]}" "${M[c,7]}")" "$(ratio "${M[a,7]}" "${M[c,7]}")" "$(ratio "${M[b,7]}" "${M[d,7]}")" \
        "$(ratio "${M[c,7]}" "${M[d,7]}")"
    printf -- '- CPU per request over the passthrough on the same (no-steal) runtime as bffgate: b/g %s, a/g %s; the runtime alone, g/c %s\n' \
        "$(ratio "${M[b,7]}" "${M[g,7]}")" "$(ratio "${M[a,7]}" "${M[g,7]}")" "$(ratio "${M[g,7]}" "${M[c,7]}")"
    printf -- '- CPU per request over the passthrough with bffgate'"'"'s runtime and allocator: b/h %s, a/h %s; mimalloc alone, h/g %s\n' \
        "$(ratio "${M[b,7]}" "${M[h,7]}")" "$(ratio "${M[a,7]}" "${M[h,7]}")" "$(ratio "${M[h,7]}" "${M[g,7]}")"
    if [ -n "$OPEN" ]; then printf '%s\n' "$OPEN"; fi
}
PARAMS="wrk ${THREADS} thread(s) (closed loop), ${CONNS} connections, ${DURATION}s measured after ${WARMUP}s warm-up per case, ${ROUNDS} round(s) (median); proxy on CPU ${PROXY_CPU} (1 thread; nginx 1 worker, no master), wrk/oha+echo+redis on CPU ${LOAD_CPU}; commit ${GIT_REV}; ${NCPU}x ${CPU_MODEL}; load average before the run ${LOADAVG_START}"

echo
echo "bffgate hot-path benchmark — $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "$PARAMS"
echo
table
if [ "$TOTAL_ERRORS" -ne 0 ]; then
    echo
    echo "WARNING: wrk counted $TOTAL_ERRORS errors (non-2xx, timeouts or socket errors): numbers are suspect"
fi

if [ "$RECORD" -eq 1 ]; then
    RESULTS="$ROOT/bench/RESULTS.md"
    if [ ! -f "$RESULTS" ]; then
        printf '# bffgate benchmark results\n\nAppended by `bash bench/run.sh --record`; see bench/README.md.\n' > "$RESULTS"
    fi
    {
        printf '\n## %s\n\n' "$(date -u '+%Y-%m-%d %H:%M UTC')"
        printf '%s\n\n' "$PARAMS"
        table
        if [ "$TOTAL_ERRORS" -ne 0 ]; then printf '\n**wrk counted %s errors: numbers are suspect.**\n' "$TOTAL_ERRORS"; fi
    } >> "$RESULTS"
    log "appended to bench/RESULTS.md"
fi
[ "$TOTAL_ERRORS" -eq 0 ] || exit 1
