//! Memory of the embedded session store: the resident size that N live sessions add, with
//! tokens the size a real provider issues (a ~1 KB JWT access token, an opaque refresh
//! token, a ~1 KB ID token, a few claims), through the same allocator bffgate uses.
//!
//! ```text
//! cargo run --release --example memsessions -- [N] [memory|cache [MAX_BYTES]]
//! ```
//!
//! `memory` (the default) stores N sessions in the embedded store; `cache` keeps N decoded
//! sessions in the session cache of a Redis store (`session.store.redis.cache`, bounded by
//! `max_entries` N and `MAX_BYTES`, default 64 MiB: it holds what fits). N defaults to
//! 100000. `TOKEN_SIZES=access,refresh,id` sets the tokens' lengths in characters (default
//! `1000,64,1000`; `0` for the refresh or ID token leaves it out), e.g. `43,43,0` for a
//! provider issuing opaque tokens. Prints the process's RSS before and after, the difference
//! per session, and in `cache` mode the bytes the cache's `max_bytes` bound counts.
//! bffgate's own RSS at start (measured separately by bench/run.sh's notes) plus this
//! difference is what a bffgate holding N sessions in memory needs.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a dev tool: it stops at the first error"
)]

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use bffgate::config::{SecretKey, SessionCacheConfig, SessionConfig, StoreConfig};
use bffgate::session::{SessionCache, SessionStore, Tokens, UserSession};
use std::time::Duration;

/// Resident set size of this process, in KiB (`VmRSS` of /proc/self/status).
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .expect("VmRSS")
}

/// `n` characters of base64url-looking text, distinct per `seed` (so nothing is shared).
fn token(n: usize, seed: u64) -> String {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            alphabet[(x % 64) as usize] as char
        })
        .collect()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: u64 = args
        .get(1)
        .map(|a| a.parse().expect("N is a whole number"))
        .unwrap_or(100_000);
    let mode = args.get(2).map_or("memory", String::as_str);
    let max_bytes: u64 = args
        .get(3)
        .map(|a| a.parse().expect("MAX_BYTES is a whole number"))
        .unwrap_or(64 << 20);
    let sizes: Vec<usize> = std::env::var("TOKEN_SIZES")
        .unwrap_or_else(|_| "1000,64,1000".into())
        .split(',')
        .map(|v| {
            v.trim()
                .parse()
                .expect("TOKEN_SIZES: three lengths, e.g. 1000,64,1000")
        })
        .collect();
    let [access_len, refresh_len, id_len] = sizes[..] else {
        panic!("TOKEN_SIZES: three lengths, e.g. 1000,64,1000");
    };
    let config = SessionConfig {
        store: StoreConfig::Memory {
            max_sessions: n + 1000,
        },
        at_rest_keys: vec![bffgate::config::RingKey {
            id: "k".into(),
            secret: SecretKey::from_bytes([7; 32]),
        }],
        key_census_interval: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(1800),
        absolute_timeout: Duration::from_secs(12 * 3600),
        refresh_before_expiry: Duration::from_secs(30),
        refresh_lock_wait: Duration::from_secs(5),
    };
    let store = SessionStore::from_config(&config).expect("memory store");
    let cache = SessionCache::new(&SessionCacheConfig {
        window: Duration::from_secs(3600),
        max_entries: n,
        max_bytes,
    })
    .expect("a cache");
    cache.trust(true);
    let before = rss_kib();
    for i in 0..n {
        let tokens = Tokens {
            access_token: token(access_len, i),
            refresh_token: (refresh_len > 0).then(|| token(refresh_len, i + 1)),
            id_token: (id_len > 0).then(|| token(id_len, i + 2)),
            access_expires_at: Some(2_000_000_000),
            refresh_expires_at: None,
        };
        let claims = serde_json::json!({
            "sub": format!("user-{i}"),
            "name": "Alice Example",
            "email": format!("user{i}@example.com"),
        });
        let s = UserSession::new(
            format!("user-{i}"),
            Some(format!("sid-{i}")),
            claims,
            tokens,
            &config,
        );
        if mode == "cache" {
            cache.keep(
                format!("{i:064x}"),
                std::sync::Arc::new(s),
                cache.read_starts(),
            );
        } else {
            store.create(&s).await.expect("store");
        }
    }
    let stored = if mode == "cache" {
        cache.len()
    } else {
        store.local_session_count().unwrap_or(0)
    };
    let after = rss_kib();
    let per = (after.saturating_sub(before) as f64) * 1024.0 / stored.max(1) as f64;
    // What the cache's byte bound counts, beside what the process grew by.
    let counted = if mode == "cache" {
        format!(
            " counted_mib={:.1}",
            cache.weighted_bytes() as f64 / (1 << 20) as f64
        )
    } else {
        String::new()
    };
    println!(
        "mode={mode} tokens={access_len},{refresh_len},{id_len} sessions={n} held={stored} rss_before_mib={:.1} rss_after_mib={:.1} added_mib={:.1} bytes_per_session={per:.0}{counted}",
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        after.saturating_sub(before) as f64 / 1024.0
    );
}
