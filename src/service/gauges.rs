//! Gauges that report state rather than count events, refreshed every second: each
//! upstream's place in the rotation (`bff_upstream_healthy`, 0 also while its name has not
//! resolved) and the memory store's live
//! sessions (`bff_memory_sessions`).

use crate::live::LiveHandle;
use crate::metrics;
use crate::session::SessionStore;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::collections::HashSet;
use std::time::Duration;

/// How often the gauges are refreshed.
const TICK: Duration = Duration::from_secs(1);

/// Publishes the gauges of the live configuration and the session store.
pub struct GaugePublisher {
    live: LiveHandle,
    store: SessionStore,
}

impl GaugePublisher {
    /// A publisher over the (reloadable) live configuration and the store.
    pub fn new(live: LiveHandle, store: SessionStore) -> Self {
        GaugePublisher { live, store }
    }

    /// Sets every gauge once. `shown` holds the `(route, upstream)` series published last
    /// time, so series of routes or upstreams a reload removed are removed too.
    fn publish(&self, shown: &mut HashSet<(String, String)>) {
        let live = self.live.load_full();
        let mut now = HashSet::new();
        for route in live.routes.routes() {
            for (i, up) in route.config.upstreams.iter().enumerate() {
                let key = (route.config.name.clone(), up.authority());
                metrics::UPSTREAM_HEALTHY
                    .with_label_values(&[key.0.as_str(), key.1.as_str()])
                    .set(i64::from(route.in_rotation(i)));
                now.insert(key);
            }
        }
        for (route, upstream) in shown.difference(&now) {
            // Absent already is fine: nothing to remove.
            let _ = metrics::UPSTREAM_HEALTHY.remove_label_values(&[route, upstream]);
        }
        *shown = now;
        if let Some(n) = self.store.local_session_count() {
            metrics::MEMORY_SESSIONS.set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        if let Some(n) = self.store.cached_sessions() {
            metrics::SESSION_CACHE_ENTRIES.set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
}

#[async_trait]
impl BackgroundService for GaugePublisher {
    /// Refreshes the gauges every [`TICK`] until shutdown.
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut shown = HashSet::new();
        let mut tick = tokio::time::interval(TICK);
        while super::next_tick(&mut tick, &mut shutdown).await {
            self.publish(&mut shown);
        }
    }
}
