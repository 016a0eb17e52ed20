//! Keeping access tokens fresh: one refresh per session, however many requests race,
//! however many bffgate instances share the store, and however badly the provider fares.
//!
//! A request whose token expires within `refresh_before_expiry` comes here. In the process,
//! the requests for one session share one *flight*: the first starts it (a task of its
//! own), the rest join it, and every one of them waits for its outcome at most
//! `refresh_lock_wait`. A request that stops waiting goes on with the token it has while it
//! is valid, else answers `503 refresh_unavailable`; the flight runs on and stores what it
//! gets. A failed flight's outcome is shared with everyone who joined it and remembered for
//! [`FAILURE_HOLD`] per session, so a storm against a failing provider makes one call.
//!
//! Across instances, the flight holds the session's store lock while it calls the provider
//! (`redeem.rs`). Only `invalid_grant` (or a refreshed ID token naming another user) ends a
//! session; every other failure keeps it for a later try.

use crate::config::RouteGrant;
use crate::dpop::DpopKey;
use crate::http::ApiError;
use crate::metrics;
use crate::session::{now_secs, RouteToken, SessionId, SessionStore, Tokens, UserSession};
use arc_swap::ArcSwap;
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// How long a failed refresh is remembered per session: requests for the session in that
/// time share the failure instead of asking the provider again. `Retry-After` of
/// `503 refresh_unavailable` says the same.
pub const FAILURE_HOLD: Duration = Duration::from_secs(1);

/// Why the provider gave no new tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshFailure {
    /// The provider refused the refresh token (`invalid_grant`), or the refreshed ID token
    /// names another user: the session cannot go on.
    Refused,
    /// The provider could not be asked, failed, or answered something that did not verify;
    /// a later try may work.
    Unavailable(String),
}

/// The provider's token endpoint, as the refresher needs it (the OpenID client implements
/// it; tests use a fake).
#[async_trait]
pub trait TokenEndpoint: Send + Sync {
    /// Redeems `refresh_token` of the session of user `sub` for new tokens, proving
    /// possession of the session's DPoP key `dpop` when it has one.
    ///
    /// # Errors
    /// [`RefreshFailure`] says whether the session can go on.
    async fn refresh(
        &self,
        refresh_token: &str,
        sub: &str,
        dpop: Option<&DpopKey>,
    ) -> Result<Tokens, RefreshFailure>;

    /// Obtains a route's own token (`grant`), exchanging `subject` (the user's access token)
    /// for an exchange grant. A failure never ends the session.
    ///
    /// # Errors
    /// [`RefreshFailure::Unavailable`] with the reason.
    async fn route_token(
        &self,
        grant: &RouteGrant,
        subject: &str,
    ) -> Result<RouteToken, RefreshFailure>;
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

/// What one flight found, shared by every request that joined it.
#[derive(Debug, Clone)]
pub(super) enum Outcome {
    /// New (or newer) tokens.
    Fresh(Tokens),
    /// The session ended.
    Ended,
    /// No new tokens; these are the session's current ones.
    Failed(Tokens),
}

/// The reloadable timings.
#[derive(Debug, Clone, Copy)]
struct Timings {
    before: Duration,
    lock_wait: Duration,
}

/// Refreshes sessions' tokens with single-flight guarantees.
pub struct Refresher {
    pub(super) inner: Arc<Inner>,
}

/// The refresher's state, shared with its flights.
pub(super) struct Inner {
    pub(super) provider: Arc<dyn TokenEndpoint>,
    pub(super) store: SessionStore,
    timings: ArcSwap<Timings>,
    flights: Mutex<HashMap<SessionId, watch::Receiver<Option<Outcome>>>>,
    failures: Mutex<HashMap<SessionId, (Instant, String)>>,
    /// Route-token flights (`route_token.rs`): by session (exchanges) or not (client
    /// credentials), and the grant's cache key.
    pub(super) route_slots: Mutex<HashMap<(Option<SessionId>, String), super::route_token::Slot>>,
}

impl std::fmt::Debug for Refresher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Refresher")
            .field("timings", &**self.inner.timings.load())
            .finish_non_exhaustive()
    }
}

fn expired(t: &Tokens) -> bool {
    t.access_expires_at.is_some_and(|at| at <= now_secs())
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

impl Refresher {
    /// A refresher refreshing `before` expiry, waiting at most `lock_wait` for a refresh.
    pub fn new(
        provider: Arc<dyn TokenEndpoint>,
        store: SessionStore,
        before: Duration,
        lock_wait: Duration,
    ) -> Self {
        Refresher {
            inner: Arc::new(Inner {
                provider,
                store,
                timings: ArcSwap::from_pointee(Timings { before, lock_wait }),
                flights: Mutex::new(HashMap::new()),
                failures: Mutex::new(HashMap::new()),
                route_slots: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Applies new `refresh_before_expiry` and `refresh_lock_wait` (configuration reload)
    /// from the next request on.
    pub fn set_timings(&self, before: Duration, lock_wait: Duration) {
        self.inner
            .timings
            .store(Arc::new(Timings { before, lock_wait }));
    }

    /// Whether a session's access token is due for a refresh (and can be refreshed).
    pub fn due(&self, t: &Tokens) -> bool {
        self.inner.due(t)
    }

    /// Returns tokens to forward for `session`, refreshing them (when `when` says so) unless
    /// somebody else already has. Answers within `refresh_lock_wait` (plus store round
    /// trips to start), whatever the provider does.
    pub async fn ensure_fresh(&self, session: UserSession, when: When) -> Freshness {
        if when == When::Due && !self.due(&session.tokens) {
            return Freshness::Fresh(session.tokens);
        }
        let started = Instant::now();
        let deadline = started + self.inner.timings.load().lock_wait;
        if self.inner.recently_failed(&session) {
            return fallback(session.tokens);
        }
        let mut rx = self.join_or_start(&session, when);
        let outcome = match tokio::time::timeout_at(deadline, rx.wait_for(Option::is_some)).await {
            Ok(Ok(outcome)) => outcome.clone(),
            // Timed out, or the flight died without an answer.
            _ => None,
        };
        metrics::REFRESH_LOCK_WAIT.observe(started.elapsed().as_secs_f64());
        match outcome {
            Some(Outcome::Fresh(t)) => Freshness::Fresh(t),
            Some(Outcome::Ended) => Freshness::Ended,
            Some(Outcome::Failed(t)) => fallback(t),
            None => fallback(session.tokens),
        }
    }

    /// The session's flight in progress, or a new one.
    fn join_or_start(&self, session: &UserSession, when: When) -> watch::Receiver<Option<Outcome>> {
        let Ok(mut flights) = self.inner.flights.lock() else {
            // A poisoned map: refresh without sharing rather than not at all.
            let (tx, rx) = watch::channel(None);
            self.spawn_flight(session.clone(), when, tx);
            return rx;
        };
        if let Some(rx) = flights.get(&session.id) {
            // A flight whose task is gone (it panicked) is replaced.
            if rx.has_changed().is_ok() {
                return rx.clone();
            }
        }
        let (tx, rx) = watch::channel(None);
        flights.insert(session.id.clone(), rx.clone());
        drop(flights);
        self.spawn_flight(session.clone(), when, tx);
        rx
    }

    fn spawn_flight(&self, session: UserSession, when: When, tx: watch::Sender<Option<Outcome>>) {
        let inner = Arc::clone(&self.inner);
        tokio::spawn(async move {
            let id = session.id.clone();
            let outcome = inner.flight(session, when).await;
            if let Outcome::Failed(t) = &outcome {
                inner.remember_failure(&id, &t.access_token);
            }
            if let Ok(mut flights) = inner.flights.lock() {
                flights.remove(&id);
            }
            let _ = tx.send(Some(outcome));
        });
    }
}

impl Inner {
    pub(super) fn due(&self, t: &Tokens) -> bool {
        let before = self.timings.load().before;
        t.refresh_token.is_some()
            && t.access_expires_at
                .is_some_and(|at| at <= now_secs().saturating_add(before.as_secs()))
    }

    pub(super) fn lock_wait(&self) -> Duration {
        self.timings.load().lock_wait
    }

    pub(super) fn timings_before(&self) -> Duration {
        self.timings.load().before
    }

    /// Whether a refresh of these very tokens failed within [`FAILURE_HOLD`].
    fn recently_failed(&self, session: &UserSession) -> bool {
        let Ok(failures) = self.failures.lock() else {
            return false;
        };
        failures.get(&session.id).is_some_and(|(until, at)| {
            *until > Instant::now() && *at == session.tokens.access_token
        })
    }

    fn remember_failure(&self, id: &SessionId, access_token: &str) {
        if let Ok(mut failures) = self.failures.lock() {
            let now = Instant::now();
            if failures.len() > 4096 {
                failures.retain(|_, (until, _)| *until > now);
            }
            failures.insert(id.clone(), (now + FAILURE_HOLD, access_token.to_owned()));
        }
    }
}
