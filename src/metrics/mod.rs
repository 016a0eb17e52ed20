//! Every Prometheus metric bffgate exports, in one place.
//!
//! Metrics are registered through `pingora_prometheus::prometheus` so they land in the
//! registry its HTTP service serves. Label values are bounded: route names from config,
//! status codes, fixed outcome words; never paths, users or ids.

mod sessions;

pub use sessions::*;

use once_cell::sync::Lazy;
use pingora_prometheus::prometheus::{
    exponential_buckets, register_gauge, register_histogram, register_histogram_vec,
    register_int_counter_vec, register_int_gauge, register_int_gauge_vec, Error as PrometheusError,
    Gauge, Histogram, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec,
};

/// This binary's version (`Cargo.toml`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The commit this binary was built from (`build.rs`), or `unknown`.
pub const COMMIT: &str = env!("BFFGATE_COMMIT");

/// Route label for requests that matched no route.
pub const NO_ROUTE: &str = "none";

/// Unwraps a prometheus call whose arguments are all constants of this file.
///
/// None of them can fail: each metric below has a fixed, valid name, help text and label
/// set, no two share a name (`tests/metrics_catalogue.rs` checks), and each is registered
/// exactly once, by its `Lazy`, which runs once per process; the buckets have a positive
/// start, a factor above 1 and a non-zero count. A mistake here would panic at the first
/// start ([`init`] forces every metric), not later under traffic.
#[allow(
    clippy::expect_used,
    reason = "constant metric definitions registered once at start-up cannot fail"
)]
fn fixed<T>(result: Result<T, PrometheusError>) -> T {
    result.expect("constant metric definition, registered once")
}

/// Latency buckets: 50 µs doubling 18 times, to ~6.5 s (loopback store calls to slow
/// upstreams).
fn latency_buckets() -> Vec<f64> {
    fixed(exponential_buckets(0.000_05, 2.0, 18))
}

/// Requests answered, by route (config name, `agent`, `health` or `none`) and status code.
pub static REQUESTS: Lazy<IntCounterVec> = Lazy::new(|| {
    fixed(register_int_counter_vec!(
        "bff_requests_total",
        "Requests answered, by route and HTTP status",
        &["route", "status"]
    ))
});

/// Whole-request latency by route.
pub static REQUEST_DURATION: Lazy<HistogramVec> = Lazy::new(|| {
    fixed(register_histogram_vec!(
        "bff_request_duration_seconds",
        "Time from request start to the end of the response, by route",
        &["route"],
        latency_buckets()
    ))
});

/// CSRF refusals by route.
pub static CSRF_REJECTIONS: Lazy<IntCounterVec> = Lazy::new(|| {
    fixed(register_int_counter_vec!(
        "bff_csrf_rejections_total",
        "Unsafe requests refused for a missing or foreign Origin or a missing CSRF header",
        &["route"]
    ))
});

/// Requests refused `429 rate_limited`, by route (config name, or `agent`) and kind
/// (`session`, `client_ip`).
pub static RATE_LIMITED: Lazy<IntCounterVec> = Lazy::new(|| {
    fixed(register_int_counter_vec!(
        "bff_rate_limited_total",
        "Requests refused because a rate limit was spent, by route and kind",
        &["route", "kind"]
    ))
});

/// Upstream failures by route and kind (`unavailable`, `timeout`).
pub static UPSTREAM_ERRORS: Lazy<IntCounterVec> = Lazy::new(|| {
    fixed(register_int_counter_vec!(
        "bff_upstream_errors_total",
        "Requests that failed upstream, by route and kind",
        &["route", "kind"]
    ))
});

/// Logins by outcome: `started`, `ok`, `failed`, `invalid_state` (this browser's login
/// has another state), `binding_mismatch` (no login of this browser: no or an unknown login
/// cookie), `limited` (`too_many_logins`), `provider_error`.
pub static LOGINS: Lazy<IntCounterVec> = Lazy::new(|| {
    fixed(register_int_counter_vec!(
        "bff_logins_total",
        "Login steps, by outcome",
        &["outcome"]
    ))
});

/// Logouts by outcome: `ok`, `no_session`, `backchannel`, `backchannel_refused`,
/// `backchannel_replay`.
pub static LOGOUTS: Lazy<IntCounterVec> = Lazy::new(|| {
    fixed(register_int_counter_vec!(
        "bff_logouts_total",
        "Logouts, by outcome",
        &["outcome"]
    ))
});

/// Token refreshes by outcome: `ok`, `invalid_grant`, `unavailable`, `grace_hit`,
/// `lock_wait` (another request or instance refreshed; this one used its result).
pub static REFRESHES: Lazy<IntCounterVec> = Lazy::new(|| {
    fixed(register_int_counter_vec!(
        "bff_refreshes_total",
        "Access-token refreshes, by outcome",
        &["outcome"]
    ))
});

/// Route tokens asked of the provider (token exchange or client credentials), by grant and
/// outcome (`ok`, `failed`).
pub static ROUTE_TOKENS: Lazy<IntCounterVec> = Lazy::new(|| {
    fixed(register_int_counter_vec!(
        "bff_route_tokens_total",
        "Route tokens obtained from the provider, by grant and outcome",
        &["grant", "outcome"]
    ))
});

/// Time spent in the provider's token endpoint for refreshes.
pub static REFRESH_DURATION: Lazy<Histogram> = Lazy::new(|| {
    fixed(register_histogram!(
        "bff_refresh_duration_seconds",
        "Refresh-token grant latency at the provider",
        latency_buckets()
    ))
});

/// Time a request waited for a refresh lock (in-process or store-wide).
pub static REFRESH_LOCK_WAIT: Lazy<Histogram> = Lazy::new(|| {
    fixed(register_histogram!(
        "bff_refresh_lock_wait_seconds",
        "Time requests waited on another request's refresh",
        latency_buckets()
    ))
});

/// Time from sending the request upstream to its response header, by route.
pub static UPSTREAM_DURATION: Lazy<HistogramVec> = Lazy::new(|| {
    fixed(register_histogram_vec!(
        "bff_upstream_duration_seconds",
        "Time from connecting upstream to the upstream's response header, by route",
        &["route"],
        latency_buckets()
    ))
});

/// OpenID provider call latency by operation (`discovery`, `jwks`, `token`, `refresh`,
/// `userinfo`, `revoke`, `par`).
pub static PROVIDER_DURATION: Lazy<HistogramVec> = Lazy::new(|| {
    fixed(register_histogram_vec!(
        "bff_provider_duration_seconds",
        "OpenID provider call latency, by operation",
        &["op"],
        latency_buckets()
    ))
});

/// Configuration reloads by result (`ok`, `error`).
pub static CONFIG_RELOADS: Lazy<IntCounterVec> = Lazy::new(|| {
    fixed(register_int_counter_vec!(
        "bff_config_reloads_total",
        "Configuration reloads, by result",
        &["result"]
    ))
});

/// Unix time of the last successful configuration load (start or reload).
pub static CONFIG_LAST_RELOAD: Lazy<Gauge> = Lazy::new(|| {
    fixed(register_gauge!(
        "bff_config_last_reload_success_timestamp_seconds",
        "Unix time of the last successful configuration load"
    ))
});

/// Build information: one series, value 1, labelled with the version and commit.
pub static BUILD_INFO: Lazy<IntGaugeVec> = Lazy::new(|| {
    fixed(register_int_gauge_vec!(
        "bff_build_info",
        "Always 1; the labels say which bffgate this is",
        &["version", "commit"]
    ))
});

/// Whether each upstream is in rotation (1) or not (0: taken out by a failed connect or
/// health check, or its host name has not resolved yet), by route and upstream `host:port`
/// as configured; refreshed every second.
pub static UPSTREAM_HEALTHY: Lazy<IntGaugeVec> = Lazy::new(|| {
    fixed(register_int_gauge_vec!(
        "bff_upstream_healthy",
        "1 while an upstream is in rotation, 0 while it is taken out or unresolved, by route and upstream",
        &["route", "upstream"]
    ))
});

/// Long-lived proxied connections (WebSockets, event streams) of sessions this process
/// tracks so it can end them with their session.
pub static LIVE_CONNECTIONS: Lazy<IntGauge> = Lazy::new(|| {
    fixed(register_int_gauge!(
        "bff_live_connections",
        "Long-lived connections (WebSocket, event stream) tracked for revocation"
    ))
});

/// Long-lived connections ended because their session ended, by `reason`: `revoked`
/// (deleted: logout, back-channel logout, an operator) or `expired`.
pub static LIVE_CLOSED: Lazy<IntCounterVec> = Lazy::new(|| {
    fixed(register_int_counter_vec!(
        "bff_live_connections_closed_total",
        "Long-lived connections closed because their session was revoked or expired",
        &["reason"]
    ))
});

/// The fixed label values of outcome counters, created at zero by [`init`].
const FIXED_LABELS: [(&Lazy<IntCounterVec>, &[&str]); 8] = [
    (
        &SESSION_LOOKUPS,
        &["ok", "missing", "invalid", "expired", "error"],
    ),
    (
        &COOKIE_FAILURES,
        &["malformed", "version", "unknown_key", "tampered"],
    ),
    (
        &LOGINS,
        &[
            "started",
            "ok",
            "failed",
            "invalid_state",
            "binding_mismatch",
            "limited",
            "provider_error",
        ],
    ),
    (
        &LOGOUTS,
        &[
            "ok",
            "no_session",
            "backchannel",
            "backchannel_refused",
            "backchannel_replay",
        ],
    ),
    (
        &REFRESHES,
        &[
            "ok",
            "invalid_grant",
            "unavailable",
            "grace_hit",
            "lock_wait",
        ],
    ),
    (&CONFIG_RELOADS, &["ok", "error"]),
    (&LIVE_CLOSED, &["revoked", "expired"]),
    (&SESSION_CACHE, &["hit", "miss"]),
];

/// The standard `process_*` metrics (CPU seconds, resident and virtual memory, open and
/// maximum file descriptors, start time, threads) from `/proc`, once per process.
fn register_process_metrics() {
    use pingora_prometheus::prometheus::process_collector::ProcessCollector;
    let registered = pingora_prometheus::prometheus::default_registry()
        .register(Box::new(ProcessCollector::for_self()));
    if let Err(e) = registered {
        // Already registered (init ran twice, as in tests): the collector is there.
        tracing::debug!(error = %e, "process metrics not registered again");
    }
}

/// Creates the series of route-labelled counters at zero for a configuration's routes, so
/// `rate()` and alerts have a starting point before a route's first failure.
pub fn init_routes<'a>(routes: impl Iterator<Item = &'a str>) {
    for route in routes {
        for kind in ["unavailable", "timeout"] {
            UPSTREAM_ERRORS.with_label_values(&[route, kind]);
        }
        CSRF_REJECTIONS.with_label_values(&[route]);
    }
}

/// Creates the `bff_rate_limited_total` series of a place's configured limits at zero.
pub fn init_rate_limits(route: &str, limits: &crate::config::RateLimit) {
    if limits.per_session.is_some() {
        RATE_LIMITED.with_label_values(&[route, "session"]);
    }
    if limits.per_client_ip.is_some() {
        RATE_LIMITED.with_label_values(&[route, "client_ip"]);
    }
}

/// Registers every metric now and creates each outcome counter's series at zero, so a
/// scrape shows every family (and `rate()` has a starting point) before the first event.
/// Families labelled by route or operation appear with their first observation.
pub fn init() {
    Lazy::force(&REQUESTS);
    Lazy::force(&REQUEST_DURATION);
    Lazy::force(&CSRF_REJECTIONS);
    Lazy::force(&RATE_LIMITED);
    Lazy::force(&STORE_DURATION);
    Lazy::force(&STORE_ERRORS);
    Lazy::force(&UPSTREAM_ERRORS);
    Lazy::force(&REFRESH_DURATION);
    Lazy::force(&REFRESH_LOCK_WAIT);
    Lazy::force(&UPSTREAM_DURATION);
    Lazy::force(&PROVIDER_DURATION);
    Lazy::force(&CONFIG_LAST_RELOAD);
    Lazy::force(&UPSTREAM_HEALTHY);
    Lazy::force(&MEMORY_SESSIONS);
    Lazy::force(&LIVE_CONNECTIONS);
    Lazy::force(&SESSION_CACHE_ENTRIES);
    Lazy::force(&SESSION_CACHE_CLEARS);
    Lazy::force(&SESSION_RECORDS_BY_KEY);
    Lazy::force(&SESSION_RECORDS_UNDER_OLD_KEYS);
    Lazy::force(&BUILD_INFO);
    Lazy::force(&ROUTE_TOKENS);
    BUILD_INFO.with_label_values(&[VERSION, COMMIT]).set(1);
    register_process_metrics();
    for grant in ["exchange", "client"] {
        for outcome in ["ok", "failed"] {
            ROUTE_TOKENS.with_label_values(&[grant, outcome]);
        }
    }
    for (counter, values) in FIXED_LABELS {
        for value in values {
            counter.with_label_values(&[value]);
        }
    }
}
