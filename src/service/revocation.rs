//! Ending long-lived connections with their session: on a revocation announced on the
//! bus (from this instance or, through the store's pub/sub, from any other), at the
//! session's absolute end, and once the store no longer holds a session that may have
//! gone idle.

use crate::live::{CloseReason, LiveConnections, LiveHandle};
use crate::session::{now_secs, Revocation, SessionCache, SessionStore};
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::broadcast::error::RecvError;

/// How often absolute ends and idle deadlines are checked.
const SWEEP: Duration = Duration::from_millis(250);
/// At most this many sessions are looked up in the store per sweep.
const CHECKS_PER_SWEEP: usize = 256;
/// Far enough ahead that every tracked session's idle check is due.
const EVERYONE: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How long before a connection's registration, beyond the session cache's window, the
/// store may have last seen its session used (clock steps, a slow admission).
const LAST_USE_SLACK: Duration = Duration::from_secs(1);

/// Ends tracked connections whose session ended.
pub struct RevocationService {
    store: SessionStore,
    conns: Arc<LiveConnections>,
    live: LiveHandle,
    /// Whether the last check failed (a failure is logged once, not every sweep).
    failing: AtomicBool,
}

impl RevocationService {
    /// A service over the store's revocation bus and this process's tracked connections;
    /// idle timeouts are read from the live configuration.
    pub fn new(store: SessionStore, conns: Arc<LiveConnections>, live: LiveHandle) -> Self {
        RevocationService {
            store,
            conns,
            live,
            failing: AtomicBool::new(false),
        }
    }

    /// Checks the sessions due for an idle check (all of them after a lost subscription)
    /// against the store and ends the connections of those it no longer holds: as expired
    /// when the session could have run out by itself, else as revoked (a deletion whose
    /// announcement the check overtook). Sessions the store could not be asked about are
    /// checked again at the next sweep.
    async fn check(&self, now: Instant, max: usize) {
        let idle = self.live.load().session.idle_timeout;
        let cache_window = self
            .store
            .revocations()
            .cache()
            .map_or(Duration::ZERO, SessionCache::window);
        let slack = cache_window + LAST_USE_SLACK;
        let due = self.conns.due_for_check(now, idle, max);
        if due.is_empty() {
            return;
        }
        match self.store.exist(&due).await {
            Ok(present) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!("live connections' sessions can be checked again");
                }
                let gone: Vec<String> = due
                    .into_iter()
                    .zip(present)
                    .filter_map(|(hash, there)| (!there).then_some(hash))
                    .collect();
                self.conns
                    .close_gone(&gone, (Instant::now(), now_secs()), idle, slack);
            }
            Err(e) => {
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "could not check live connections' sessions; retrying every sweep");
                }
                self.conns.check_again(&due);
            }
        }
    }

    /// Reacts to announcements and sweeps until `shutdown`.
    async fn run(&self, mut shutdown: ShutdownWatch) {
        let mut heard = self.store.revocations().subscribe();
        let mut tick = tokio::time::interval(SWEEP);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // Announcements first: a deletion heard is counted as a revocation, not found
            // missing by a sweep that happened to be due at the same time.
            tokio::select! {
                biased;
                changed = shutdown.changed() => {
                    // A dropped sender is a shutdown too (and would otherwise be ready
                    // forever, first in this biased select).
                    if changed.is_err() || *shutdown.borrow() {
                        return;
                    }
                }
                event = heard.recv() => match event {
                    Ok(Revocation::Sessions(hashes)) => {
                        self.conns.close_sessions(&hashes, CloseReason::Revoked);
                    }
                    Ok(Revocation::Recheck) | Err(RecvError::Lagged(_)) => {
                        if !self.conns.is_empty() {
                            self.check(Instant::now() + EVERYONE, usize::MAX).await;
                        }
                    }
                    Err(RecvError::Closed) => return,
                },
                _ = tick.tick() => {
                    if !self.conns.is_empty() {
                        self.conns.close_ended(now_secs());
                        self.check(Instant::now(), CHECKS_PER_SWEEP).await;
                    }
                }
            }
        }
    }
}

#[async_trait]
impl BackgroundService for RevocationService {
    /// Relays other instances' revocations into this process and ends connections until
    /// shutdown.
    async fn start(&self, shutdown: ShutdownWatch) {
        let mut stop = shutdown.clone();
        let stopped = async move {
            while !*stop.borrow() {
                if stop.changed().await.is_err() {
                    return;
                }
            }
        };
        tokio::join!(self.store.relay_revocations(stopped), self.run(shutdown));
    }
}
