//! The key census: how many session records each at-rest key sealed, published as
//! `bff_session_records_by_key` and `bff_session_records_under_old_keys`, so an operator
//! knows when an old key can leave the ring.
//!
//! Counting, not per-write counters: records expire silently (TTL, LRU), so only looking
//! at the store is right, on one instance or many. Every `session.key_census_interval`,
//! one walk of the session records in bounded steps (Redis: `SCAN … COUNT 1000` and the
//! first bytes of each record by `GETRANGE`, its clear key-id header; nothing is
//! decrypted). On a shared store every instance reports the whole store: read the gauge of
//! any one instance, do not sum them. A failed census (Redis down, or a Redis Cluster,
//! whose keys one SCAN cannot walk) sets the old-key gauge to -1: unknown.

use crate::metrics;
use crate::session::{SessionStore, OTHER_KEY};
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Counts the store by at-rest key on a fixed interval.
pub struct KeyCensusService {
    store: SessionStore,
    interval: Duration,
    /// Whether the last census failed (its warning is logged once).
    failing: AtomicBool,
}

impl KeyCensusService {
    /// A census of `store` every `interval`.
    pub fn new(store: SessionStore, interval: Duration) -> Self {
        KeyCensusService {
            store,
            interval,
            failing: AtomicBool::new(false),
        }
    }

    /// Runs one census and publishes it.
    pub async fn count_once(&self) {
        match self.store.key_census().await {
            Ok(census) => {
                metrics::init_key_ids(census.by_key.keys().map(String::as_str));
                for (id, n) in &census.by_key {
                    metrics::SESSION_RECORDS_BY_KEY
                        .with_label_values(&[id.as_str()])
                        .set(i64::try_from(*n).unwrap_or(i64::MAX));
                }
                metrics::SESSION_RECORDS_UNDER_OLD_KEYS
                    .set(i64::try_from(census.under_old_keys).unwrap_or(i64::MAX));
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!("key census works again");
                }
            }
            Err(e) => {
                // Once per run of failures, not every interval.
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "key census failed: records under old at-rest keys unknown");
                }
                metrics::SESSION_RECORDS_UNDER_OLD_KEYS.set(-1);
            }
        }
    }
}

#[async_trait]
impl BackgroundService for KeyCensusService {
    /// Counts every interval until shutdown.
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let ids = self.store.at_rest_key_ids();
        metrics::init_key_ids(
            ids.iter()
                .map(String::as_str)
                .chain(std::iter::once(OTHER_KEY)),
        );
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while super::next_tick(&mut tick, &mut shutdown).await {
            self.count_once().await;
        }
    }
}
