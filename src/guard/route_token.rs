//! A route's own token (`token:` in the route): a token exchange per session, or the
//! client's client-credentials token per process, each obtained once however many requests
//! race for it.
//!
//! Exchanged tokens live in the session record (sealed with it, dropped with it), written
//! under the same store lock as a refresh, so neither write loses the other's. Requests of
//! one process for the same session and grant wait on one in-process flight; instances
//! meet at the store lock, and whoever takes it second finds the first's token on its
//! re-read. Client-credentials tokens are the client's, not a user's: they are kept in
//! process memory only, one per grant, shared by every session.

use super::redeem::{lease, PROVIDER_CALL_LIMIT};
use super::refresh::{Inner, Refresher};
use crate::config::{GrantKind, RouteGrant};
use crate::http::ApiError;
use crate::metrics;
use crate::session::{now_secs, RouteToken, SessionId, UserSession};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Pause between tries for the store lock held by another instance.
const POLL: Duration = Duration::from_millis(25);

/// One grant's flight and the token it last obtained.
pub(super) type Slot = Arc<tokio::sync::Mutex<Option<RouteToken>>>;

impl Refresher {
    /// The token a route with its own `grant` forwards, for a session `id` whose stored
    /// route tokens are `cached` and whose (fresh) user token is `subject`.
    ///
    /// # Errors
    /// [`ApiError::RouteTokenUnavailable`] when none could be had within
    /// `refresh_lock_wait`; [`ApiError::StoreUnavailable`] when the store failed;
    /// [`ApiError::SessionExpired`] when the session ended meanwhile.
    pub async fn route_token(
        &self,
        id: &SessionId,
        cached: &BTreeMap<String, RouteToken>,
        subject: &str,
        grant: &RouteGrant,
    ) -> Result<String, ApiError> {
        let key = grant.cache_key();
        let inner = &self.inner;
        if grant.kind == GrantKind::Exchange {
            if let Some(t) = cached.get(&key).filter(|t| !inner.due_at(t.expires_at)) {
                return Ok(t.access_token.clone());
            }
        }
        let started = Instant::now();
        let deadline = started + inner.lock_wait();
        let slot = inner.slot(id, grant, &key);
        let outcome = match tokio::time::timeout_at(deadline, slot.lock()).await {
            Ok(mut held) => {
                let out = match grant.kind {
                    GrantKind::Client => inner.client_token(&mut held, grant).await,
                    GrantKind::Exchange => {
                        inner
                            .exchange(id, &mut held, grant, &key, subject, deadline)
                            .await
                    }
                };
                drop(held);
                out
            }
            Err(_) => Err(ApiError::RouteTokenUnavailable),
        };
        inner.release_slot(id, grant.kind, &key, &slot);
        metrics::REFRESH_LOCK_WAIT.observe(started.elapsed().as_secs_f64());
        outcome
    }
}

impl Inner {
    /// Whether a token expiring at `at` is due for renewal (`refresh_before_expiry`).
    fn due_at(&self, at: Option<u64>) -> bool {
        let before = self.timings_before();
        at.is_some_and(|at| at <= now_secs().saturating_add(before.as_secs()))
    }

    /// The flight slot of a grant: per process for client credentials, per session for an
    /// exchange.
    fn slot(&self, id: &SessionId, grant: &RouteGrant, key: &str) -> Slot {
        let mut slots = match self.route_slots.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        let session = (grant.kind == GrantKind::Exchange).then(|| id.clone());
        Arc::clone(slots.entry((session, key.to_string())).or_default())
    }

    /// Forgets an exchange slot nobody else holds (client slots keep their token).
    fn release_slot(&self, id: &SessionId, kind: GrantKind, key: &str, slot: &Slot) {
        if kind != GrantKind::Exchange {
            return;
        }
        let mut slots = match self.route_slots.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        // Two references: the map's and ours. A waiter holding a third keeps it.
        if Arc::strong_count(slot) <= 2 {
            slots.remove(&(Some(id.clone()), key.to_string()));
        }
    }

    /// The client's own token for `grant`: the one held while it is not due, else a new one.
    async fn client_token(
        &self,
        held: &mut Option<RouteToken>,
        grant: &RouteGrant,
    ) -> Result<String, ApiError> {
        if let Some(t) = held.as_ref().filter(|t| !self.due_at(t.expires_at)) {
            return Ok(t.access_token.clone());
        }
        match self.call(grant, "").await {
            Ok(t) => {
                let token = t.access_token.clone();
                *held = Some(t);
                Ok(token)
            }
            // A token that is due but not expired still works.
            Err(e) => match held.as_ref().filter(|t| !expired(t)) {
                Some(t) => Ok(t.access_token.clone()),
                None => Err(e),
            },
        }
    }

    /// The session's exchanged token for `grant`: one another request of this process
    /// just obtained, one stored by any instance, or a new one made under the store lock.
    async fn exchange(
        &self,
        id: &SessionId,
        held: &mut Option<RouteToken>,
        grant: &RouteGrant,
        key: &str,
        subject: &str,
        deadline: Instant,
    ) -> Result<String, ApiError> {
        if let Some(t) = held.as_ref().filter(|t| !self.due_at(t.expires_at)) {
            return Ok(t.access_token.clone());
        }
        let stored = |s: &UserSession| {
            s.route_tokens
                .get(key)
                .filter(|t| !self.due_at(t.expires_at))
                .cloned()
        };
        let mut session = self.read(id).await?;
        if let Some(t) = stored(&session) {
            return Ok(remember(held, t));
        }
        let lock: [u8; 16] = crate::random::os_bytes();
        loop {
            match self.store.lock_session(id, &lock, lease(&self.store)).await {
                Ok(true) => break,
                Ok(false) => {}
                Err(_) => return Err(ApiError::StoreUnavailable),
            }
            if Instant::now() + POLL >= deadline {
                return Err(ApiError::RouteTokenUnavailable);
            }
            tokio::time::sleep(POLL).await;
            session = self.read(id).await?;
            if let Some(t) = stored(&session) {
                return Ok(remember(held, t));
            }
        }
        let result = self.exchange_locked(id, grant, key, subject, &stored).await;
        if let Err(e) = self.store.unlock_session(id, &lock).await {
            tracing::debug!(error = %e, "session lock release failed; it expires by itself");
        }
        result.map(|t| remember(held, t))
    }

    /// The exchange itself, with the session's store lock held.
    async fn exchange_locked(
        &self,
        id: &SessionId,
        grant: &RouteGrant,
        key: &str,
        subject: &str,
        stored: &impl Fn(&UserSession) -> Option<RouteToken>,
    ) -> Result<RouteToken, ApiError> {
        let mut session = self.read(id).await?;
        if let Some(t) = stored(&session) {
            return Ok(t);
        }
        // The stored user token is the newest (a refresh may have finished meanwhile).
        let subject = if session.tokens.access_token.is_empty() {
            subject.to_string()
        } else {
            session.tokens.access_token.clone()
        };
        let token = self.call(grant, &subject).await?;
        session.route_tokens.insert(key.to_string(), token.clone());
        match self.store.update(&session).await {
            Ok(true) => Ok(token),
            Ok(false) => Err(ApiError::SessionExpired),
            Err(e) => {
                // The token is good for this request; the next one exchanges again.
                tracing::warn!(error = %e, "an exchanged route token was not stored");
                Ok(token)
            }
        }
    }

    async fn read(&self, id: &SessionId) -> Result<UserSession, ApiError> {
        match self.store.get(id).await {
            Ok(Some(s)) => Ok(s),
            Ok(None) => Err(ApiError::SessionExpired),
            Err(_) => Err(ApiError::StoreUnavailable),
        }
    }

    /// One provider call for `grant`, bounded by [`PROVIDER_CALL_LIMIT`].
    async fn call(&self, grant: &RouteGrant, subject: &str) -> Result<RouteToken, ApiError> {
        let label = grant.kind.as_str();
        let call = self.provider.route_token(grant, subject);
        match tokio::time::timeout(PROVIDER_CALL_LIMIT, call).await {
            Ok(Ok(t)) => {
                metrics::ROUTE_TOKENS
                    .with_label_values(&[label, "ok"])
                    .inc();
                Ok(t)
            }
            Ok(Err(e)) => {
                metrics::ROUTE_TOKENS
                    .with_label_values(&[label, "failed"])
                    .inc();
                tracing::warn!(grant = label, reason = ?e, "no route token from the provider");
                Err(ApiError::RouteTokenUnavailable)
            }
            Err(_) => {
                metrics::ROUTE_TOKENS
                    .with_label_values(&[label, "failed"])
                    .inc();
                tracing::warn!(
                    grant = label,
                    "the provider did not answer a route token grant in time"
                );
                Err(ApiError::RouteTokenUnavailable)
            }
        }
    }
}

fn expired(t: &RouteToken) -> bool {
    t.expires_at.is_some_and(|at| at <= now_secs())
}

fn remember(held: &mut Option<RouteToken>, t: RouteToken) -> String {
    let token = t.access_token.clone();
    *held = Some(t);
    token
}
