//! Keeping access tokens fresh: one refresh per session, however many requests race and
//! however many bffgate instances share the store.
//!
//! A request whose token expires within `refresh_before_expiry` comes here. In the process,
//! requests for one session queue on that session's async mutex; the first refreshes and
//! the rest re-read the session and find fresh tokens. Across instances, the refresher
//! holds the session's store lock (`SET NX PX`, released by compare-and-delete) while it
//! calls the provider; other instances wait (bounded) and re-read. A grace record maps
//! the old refresh token to the new tokens for a short while, so a request that read the
//! session just before a refresh never replays a rotated refresh token.

use crate::http::ApiError;
use crate::metrics;
use crate::session::{now_secs, SessionId, SessionStore, Tokens, UserSession};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::time::Instant;

/// How long the store lock is held at most (a crashed holder frees it by then).
const LOCK_TTL: Duration = Duration::from_secs(10);
/// How long a grace record lives.
const GRACE_TTL: Duration = Duration::from_secs(30);
/// Pause between polls while another instance refreshes.
const POLL: Duration = Duration::from_millis(25);

/// Why the provider gave no new tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshFailure {
    /// The provider refused the refresh token: the session cannot go on.
    Refused,
    /// The provider could not be asked or failed; a later try may work.
    Unavailable(String),
}

/// The provider's token endpoint, as the refresher needs it (the OpenID client implements
/// it; tests use a fake).
#[async_trait]
pub trait TokenEndpoint: Send + Sync {
    /// Redeems `refresh_token` of the session of user `sub` for new tokens.
    ///
    /// # Errors
    /// [`RefreshFailure`] says whether the session can go on.
    async fn refresh(&self, refresh_token: &str, sub: &str) -> Result<Tokens, RefreshFailure>;
}

/// What a request should do after asking for fresh tokens.
#[derive(Debug)]
pub enum Freshness {
    /// Forward with these tokens (refreshed, or still valid).
    Fresh(Tokens),
    /// The provider refused the refresh token: the session was deleted.
    Ended,
    /// No fresh token could be had and the current one has expired.
    Unavailable,
}

impl Freshness {
    /// The tokens to forward, or the error to answer.
    ///
    /// # Errors
    /// [`ApiError::SessionExpired`] when the session ended, [`ApiError::RefreshUnavailable`]
    /// when no valid token could be had.
    pub fn into_tokens(self) -> Result<Tokens, ApiError> {
        match self {
            Freshness::Fresh(t) => Ok(t),
            Freshness::Ended => Err(ApiError::SessionExpired),
            Freshness::Unavailable => Err(ApiError::RefreshUnavailable),
        }
    }
}

/// When to refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// Only when the access token is due (expires within `refresh_before_expiry`).
    Due,
    /// Now, due or not (`POST /refresh`).
    Now,
}

/// Refreshes sessions' tokens with single-flight guarantees.
pub struct Refresher {
    provider: Arc<dyn TokenEndpoint>,
    store: SessionStore,
    before: Duration,
    lock_wait: Duration,
    local: Mutex<HashMap<SessionId, Weak<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for Refresher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Refresher")
            .field("before", &self.before)
            .finish_non_exhaustive()
    }
}

fn expired(t: &Tokens) -> bool {
    t.access_expires_at.is_some_and(|at| at <= now_secs())
}

impl Refresher {
    /// A refresher refreshing `before` expiry, waiting at most `lock_wait` for others.
    pub fn new(
        provider: Arc<dyn TokenEndpoint>,
        store: SessionStore,
        before: Duration,
        lock_wait: Duration,
    ) -> Self {
        Refresher {
            provider,
            store,
            before,
            lock_wait,
            local: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a session's access token is due for a refresh (and can be refreshed).
    pub fn due(&self, t: &Tokens) -> bool {
        t.refresh_token.is_some()
            && t.access_expires_at
                .is_some_and(|at| at <= now_secs().saturating_add(self.before.as_secs()))
    }

    fn local_lock(&self, id: &SessionId) -> Arc<tokio::sync::Mutex<()>> {
        let Ok(mut map) = self.local.lock() else {
            return Arc::new(tokio::sync::Mutex::new(()));
        };
        if let Some(m) = map.get(id).and_then(Weak::upgrade) {
            return m;
        }
        if map.len() > 4096 {
            map.retain(|_, w| w.strong_count() > 0);
        }
        let m = Arc::new(tokio::sync::Mutex::new(()));
        map.insert(id.clone(), Arc::downgrade(&m));
        m
    }

    /// What to do when no refresh could be made: keep using a token that is still valid.
    fn fallback(tokens: Tokens) -> Freshness {
        metrics::REFRESHES.with_label_values(&["unavailable"]).inc();
        if expired(&tokens) {
            Freshness::Unavailable
        } else {
            Freshness::Fresh(tokens)
        }
    }

    /// Returns tokens to forward for `session`, refreshing them (when `when` says so) unless
    /// somebody else already has.
    pub async fn ensure_fresh(&self, session: UserSession, when: When) -> Freshness {
        if when == When::Due && !self.due(&session.tokens) {
            return Freshness::Fresh(session.tokens);
        }
        let waited = Instant::now();
        let local = self.local_lock(&session.id);
        let _in_process = local.lock().await;
        // Whoever held the lock before may have refreshed: read again.
        let mut current = match self.store.get(&session.id).await {
            Ok(Some(s)) => s,
            Ok(None) => return Freshness::Ended,
            Err(_) => return Self::fallback(session.tokens),
        };
        // Tokens that changed since this request read the session are the result of the
        // refresh it was about to do: one refresh per generation, even for tokens so short-
        // lived that they are due again at once.
        if current.tokens.access_token != session.tokens.access_token {
            metrics::REFRESHES.with_label_values(&["lock_wait"]).inc();
            metrics::REFRESH_LOCK_WAIT.observe(waited.elapsed().as_secs_f64());
            return Freshness::Fresh(current.tokens);
        }
        let token: [u8; 16] = crate::random::os_bytes();
        let now = Instant::now();
        let deadline = now.checked_add(self.lock_wait).unwrap_or(now);
        loop {
            match self.store.lock_session(&current.id, &token, LOCK_TTL).await {
                Ok(true) => break,
                Ok(false) => {}
                Err(_) => return Self::fallback(current.tokens),
            }
            // Another instance is refreshing: wait for its result.
            tokio::time::sleep(POLL).await;
            match self.store.get(&current.id).await {
                Ok(Some(s)) if s.tokens.access_token != current.tokens.access_token => {
                    metrics::REFRESHES.with_label_values(&["lock_wait"]).inc();
                    metrics::REFRESH_LOCK_WAIT.observe(waited.elapsed().as_secs_f64());
                    return Freshness::Fresh(s.tokens);
                }
                Ok(Some(_)) => {}
                Ok(None) => return Freshness::Ended,
                Err(_) => return Self::fallback(current.tokens),
            }
            if Instant::now() >= deadline {
                return Self::fallback(current.tokens);
            }
        }
        metrics::REFRESH_LOCK_WAIT.observe(waited.elapsed().as_secs_f64());
        let outcome = self.refresh_locked(&mut current).await;
        if let Err(e) = self.store.unlock_session(&current.id, &token).await {
            tracing::debug!(error = %e, "refresh lock release failed; it expires by itself");
        }
        outcome
    }

    /// The refresh itself, with the store lock held.
    async fn refresh_locked(&self, current: &mut UserSession) -> Freshness {
        // The session may have been refreshed between our read and the lock.
        match self.store.get(&current.id).await {
            Ok(Some(s)) => {
                let changed = s.tokens.access_token != current.tokens.access_token;
                *current = s;
                if changed {
                    metrics::REFRESHES.with_label_values(&["lock_wait"]).inc();
                    return Freshness::Fresh(current.tokens.clone());
                }
            }
            Ok(None) => return Freshness::Ended,
            Err(_) => return Self::fallback(current.tokens.clone()),
        }
        let Some(old_rt) = current.tokens.refresh_token.clone() else {
            return Self::fallback(current.tokens.clone());
        };
        // A grace record is only worth using when it holds tokens this session has not seen
        // yet that are not themselves due; otherwise ask the provider.
        if let Ok(Some(tokens)) = self.store.get_grace(&current.id, &old_rt).await {
            if tokens.access_token != current.tokens.access_token && !self.due(&tokens) {
                metrics::REFRESHES.with_label_values(&["grace_hit"]).inc();
                return Freshness::Fresh(tokens);
            }
        }
        let started = Instant::now();
        let result = self.provider.refresh(&old_rt, &current.sub).await;
        metrics::REFRESH_DURATION.observe(started.elapsed().as_secs_f64());
        match result {
            Ok(mut tokens) => {
                if tokens.id_token.is_none() {
                    tokens.id_token = current.tokens.id_token.clone();
                }
                current.tokens = tokens.clone();
                match self.store.update(current).await {
                    Ok(true) => {}
                    Ok(false) => return Freshness::Ended,
                    Err(e) => {
                        tracing::warn!(error = %e, "refreshed tokens not stored; the next request refreshes again")
                    }
                }
                // Only a rotated refresh token can be replayed by mistake: without rotation
                // the old one stays valid and needs no grace record.
                let rotated = tokens.refresh_token.as_deref() != Some(old_rt.as_str());
                if rotated {
                    if let Err(e) = self
                        .store
                        .put_grace(&current.id, &old_rt, &tokens, GRACE_TTL)
                        .await
                    {
                        tracing::debug!(error = %e, "grace record not stored");
                    }
                }
                metrics::REFRESHES.with_label_values(&["ok"]).inc();
                Freshness::Fresh(tokens)
            }
            Err(RefreshFailure::Refused) => {
                metrics::REFRESHES
                    .with_label_values(&["invalid_grant"])
                    .inc();
                tracing::info!("the provider refused a refresh token; ending the session");
                let _ = self.store.delete(&current.id).await;
                Freshness::Ended
            }
            Err(RefreshFailure::Unavailable(why)) => {
                tracing::warn!(error = %why, "refresh failed; keeping the session for a later try");
                Self::fallback(current.tokens.clone())
            }
        }
    }
}
