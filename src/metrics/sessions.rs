//! The metrics of sessions: lookups and cookies, store calls, the memory store's size, the
//! session cache, and the at-rest key census. Registered like the rest (see the parent).

use super::{fixed, latency_buckets};
use once_cell::sync::Lazy;
use pingora_prometheus::prometheus::{
    register_histogram_vec, register_int_counter, register_int_counter_vec, register_int_gauge,
    register_int_gauge_vec, Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec,
};

/// Session lookups on API routes, by result: `ok`, `missing` (no cookie), `invalid`
/// (cookie does not open), `expired` (session gone or past its end), `error` (store failed).
pub static SESSION_LOOKUPS: Lazy<IntCounterVec> = Lazy::new(|| {
    fixed(register_int_counter_vec!(
        "bff_session_lookups_total",
        "Session lookups on API routes, by result",
        &["result"]
    ))
});

/// Cookies that did not open, by reason (`malformed`, `version`, `unknown_key`, `tampered`).
pub static COOKIE_FAILURES: Lazy<IntCounterVec> = Lazy::new(|| {
    fixed(register_int_counter_vec!(
        "bff_cookie_unseal_failures_total",
        "Session cookies that failed to open, by reason",
        &["reason"]
    ))
});

/// Session store call latency by operation.
pub static STORE_DURATION: Lazy<HistogramVec> = Lazy::new(|| {
    fixed(register_histogram_vec!(
        "bff_store_duration_seconds",
        "Session store call latency, by operation",
        &["op"],
        latency_buckets()
    ))
});

/// Session store failures (unreachable or timed out) by operation.
pub static STORE_ERRORS: Lazy<IntCounterVec> = Lazy::new(|| {
    fixed(register_int_counter_vec!(
        "bff_store_errors_total",
        "Session store calls that failed or timed out, by operation",
        &["op"]
    ))
});

/// Live sessions in the embedded memory store (absent with Redis); refreshed every second.
pub static MEMORY_SESSIONS: Lazy<IntGauge> = Lazy::new(|| {
    fixed(register_int_gauge!(
        "bff_memory_sessions",
        "Live sessions held by the embedded memory store"
    ))
});

/// Sessions held by the in-process session cache of a Redis store; refreshed every second.
pub static SESSION_CACHE_ENTRIES: Lazy<IntGauge> = Lazy::new(|| {
    fixed(register_int_gauge!(
        "bff_session_cache_entries",
        "Sessions held by the in-process session cache (Redis store)"
    ))
});

/// Session cache lookups by `result`: `hit` (served without the store) or `miss`.
pub static SESSION_CACHE: Lazy<IntCounterVec> = Lazy::new(|| {
    fixed(register_int_counter_vec!(
        "bff_session_cache_total",
        "Session cache lookups by result (hit: served without a store round trip)",
        &["result"]
    ))
});

/// Times the session cache was emptied because announcements of endings may be missed
/// (the revocation subscription was lost, or came back).
pub static SESSION_CACHE_CLEARS: Lazy<IntCounter> = Lazy::new(|| {
    fixed(register_int_counter!(
        "bff_session_cache_clears_total",
        "Times the session cache was emptied because revocations may have been missed"
    ))
});

/// Session records in the store by the at-rest key that sealed them (`(other)`: a key no
/// longer in the ring, or a record from before key rings), from the last key census.
pub static SESSION_RECORDS_BY_KEY: Lazy<IntGaugeVec> = Lazy::new(|| {
    fixed(register_int_gauge_vec!(
        "bff_session_records_by_key",
        "Session records in the store by the at-rest key that sealed them, at the last key census",
        &["key_id"]
    ))
});

/// Session records not sealed under the current at-rest key, from the last key census: an
/// old key can be removed once this is 0. -1 when the census failed (unknown).
pub static SESSION_RECORDS_UNDER_OLD_KEYS: Lazy<IntGauge> = Lazy::new(|| {
    fixed(register_int_gauge!(
        "bff_session_records_under_old_keys",
        "Session records not sealed under the current at-rest key (-1: unknown), at the last key census"
    ))
});

/// Creates `bff_session_records_by_key` at zero for each of `ids` (the key ids of the
/// at-rest ring and `(other)`), removing every other series.
pub fn init_key_ids<'a>(ids: impl Iterator<Item = &'a str>) {
    SESSION_RECORDS_BY_KEY.reset();
    for id in ids {
        SESSION_RECORDS_BY_KEY.with_label_values(&[id]).set(0);
    }
}

/// `bff_session_lookups_total{result="ok"}`, looked up once: it is on every API request.
pub(crate) static LOOKUP_OK: Lazy<IntCounter> =
    Lazy::new(|| SESSION_LOOKUPS.with_label_values(&["ok"]));

/// `bff_session_cache_total{result="hit"}` and `{result="miss"}`, looked up once: one of
/// them is on every API request with a session.
pub(crate) static CACHE_HIT: Lazy<IntCounter> =
    Lazy::new(|| SESSION_CACHE.with_label_values(&["hit"]));

pub(crate) static CACHE_MISS: Lazy<IntCounter> =
    Lazy::new(|| SESSION_CACHE.with_label_values(&["miss"]));

/// `bff_store_duration_seconds{op="get"}`, looked up once: it is on every API request.
pub(crate) static STORE_GET: Lazy<Histogram> =
    Lazy::new(|| STORE_DURATION.with_label_values(&["get"]));
