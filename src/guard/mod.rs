//! The request guard: who is this, and may it go on.
//!
//! CSRF and Origin rules (`csrf`), cookie → session ([`lookup()`]), and keeping the access
//! token fresh (`refresh`: one bounded, shared flight per session; `redeem`: the store
//! lease and the provider call under it, over the [`TokenEndpoint`] trait the provider
//! client implements), a route's own token (`route_token`: exchange or client credentials,
//! one flight per grant), and request-rate limits (`rate`: per session and per client
//! address, shared through the store). The proxy asks [`Guard::admit`] for every API
//! request that reads the session; the agent's endpoints use the same pieces.

mod csrf;
mod identity;
mod lookup;
mod rate;
mod redeem;
mod refresh;
mod route_token;

pub use csrf::{check_csrf, check_route_request};
pub use identity::apply as apply_identity;
pub use lookup::{lookup, Lookup};
pub use redeem::{lease, PROVIDER_CALL_LIMIT};
pub use refresh::{Freshness, RefreshFailure, Refresher, TokenEndpoint, When, FAILURE_HOLD};

use crate::config::{AuthMode, Rate, RouteConfig, TokenPolicy};
use crate::http::ApiError;
use crate::live::LiveConfig;
use crate::metrics;
use crate::session::{now_secs, SessionId, SessionStore, Tokens, UserSession};
use pingora::http::RequestHeader;
use std::sync::Arc;
use tracing::Instrument;

/// What an admitted request carries upstream.
#[derive(Debug)]
pub struct Admitted {
    /// The access token to forward (absent for an anonymous request on an optional route).
    pub access_token: Option<String>,
    /// A re-sealed session cookie to send back (its cookie was sealed with an older key).
    pub set_cookie: Option<String>,
    /// The session's DPoP key, when the token goes upstream bound to it (`Authorization:
    /// DPoP` with a proof) rather than as a bearer.
    pub dpop: Option<Arc<crate::dpop::DpopKey>>,
    /// The session as read (shared with the session cache; `None` for an anonymous request
    /// on an optional route): its user and claims for the access log and identity headers,
    /// its id and absolute end for tracking a long-lived connection it opens. Its tokens
    /// may be older than `access_token`.
    pub session: Option<Arc<UserSession>>,
}

/// The checks every credentialed request goes through, over one session store.
#[derive(Debug)]
pub struct Guard {
    store: SessionStore,
    refresher: Option<Refresher>,
    /// Opened DPoP keys by session: opening one costs a scalar multiplication, and a
    /// session's key never changes, so each is opened once while it is in use.
    dpop_keys: moka::sync::Cache<SessionId, std::sync::Arc<crate::dpop::DpopKey>>,
}

/// How many sessions' opened DPoP keys are kept, and for how long unused.
const DPOP_KEYS_KEPT: u64 = 10_000;
const DPOP_KEY_IDLE: std::time::Duration = std::time::Duration::from_secs(300);

impl Guard {
    /// A guard over `store`; `refresher` is present when a provider can refresh tokens.
    pub fn new(store: SessionStore, refresher: Option<Refresher>) -> Self {
        Guard {
            store,
            refresher,
            dpop_keys: moka::sync::Cache::builder()
                .max_capacity(DPOP_KEYS_KEPT)
                .time_to_idle(DPOP_KEY_IDLE)
                .build(),
        }
    }

    /// Applies new refresh timings (configuration reload); a no-op without a provider.
    pub fn set_refresh_timings(&self, before: std::time::Duration, lock_wait: std::time::Duration) {
        if let Some(r) = &self.refresher {
            r.set_timings(before, lock_wait);
        }
    }

    /// The session store.
    pub fn store(&self) -> &SessionStore {
        &self.store
    }

    /// The session the request's cookie names, per `live`'s cookie policy.
    pub async fn lookup(&self, req: &RequestHeader, live: &LiveConfig) -> Lookup {
        let span = crate::current_child_span!(
            "session.lookup",
            bff.session.result = tracing::field::Empty,
            bff.session.cache = tracing::field::Empty,
        );
        let found = lookup(&self.store, &live.cookie, req)
            .instrument(span.clone())
            .await;
        span.record("bff.session.result", found.label());
        found
    }

    /// The live session the request's cookie names.
    ///
    /// # Errors
    /// [`Lookup::refusal`] when there is none.
    pub async fn session(
        &self,
        req: &RequestHeader,
        live: &LiveConfig,
    ) -> Result<UserSession, ApiError> {
        let (session, _) = self.lookup(req, live).await.into_session()?;
        Ok(Arc::unwrap_or_clone(session))
    }

    /// Spends one request of the client address's budget on `scope` (a route name, or
    /// `agent`), before any other work.
    ///
    /// # Errors
    /// `429 rate_limited` when it is spent.
    pub async fn limit_client(
        &self,
        scope: &str,
        rate: Rate,
        client: Option<std::net::IpAddr>,
    ) -> Result<(), ApiError> {
        rate::per_client(&self.store, scope, rate, client).await
    }

    /// Applies an API route's session policy (its `auth` is not `none`): CSRF, cookie →
    /// session, the route's `per_session` rate limit, token freshness, and the token the
    /// route forwards (its `token` policy; bound to the session's DPoP key unless the route
    /// asks for bearer). The route's name labels the CSRF and rate-limit metrics.
    ///
    /// # Errors
    /// The [`ApiError`] to answer instead of forwarding.
    pub async fn admit(
        &self,
        req: &RequestHeader,
        live: &LiveConfig,
        config: &RouteConfig,
    ) -> Result<Admitted, ApiError> {
        let (mode, route, token) = (config.auth, config.name.as_str(), &config.token);
        if let Err(e) = check_route_request(req, &live.agent) {
            metrics::CSRF_REJECTIONS.with_label_values(&[route]).inc();
            return Err(e);
        }
        let (session, reseal) = match self.lookup(req, live).await {
            Lookup::Missing if mode == AuthMode::Optional => {
                return Ok(Admitted {
                    access_token: None,
                    set_cookie: None,
                    dpop: None,
                    session: None,
                })
            }
            found => found.into_session()?,
        };
        if let Some(rate) = config.rate_limit.per_session {
            // Before any refresh: a session over its limit costs the provider nothing.
            rate::per_session(&self.store, route, rate, &session.id).await?;
        }
        let set_cookie = reseal.then(|| resealed_cookie(live, &session));
        // Only the user's own token is bound to the session's key; route tokens and routes
        // that ask for bearer go without a proof.
        let dpop = match (&session.dpop_key, token) {
            (Some(k), TokenPolicy::User) if config.dpop => Some(self.dpop_key(&session.id, k)?),
            _ => None,
        };
        // The shared session is copied only when its tokens are due for a refresh.
        let user_token = match &self.refresher {
            Some(r) if r.due(&session.tokens) => {
                let copy = UserSession::clone(&session);
                self.fresh(copy, When::Due).await?.access_token
            }
            _ => session.tokens.access_token.clone(),
        };
        let access_token = match (token, &self.refresher) {
            (TokenPolicy::User, _) => Some(user_token),
            (TokenPolicy::None, _) => None,
            (TokenPolicy::Grant(grant), Some(r)) => {
                let span = crate::current_child_span!("token.route", grant = grant.kind.as_str());
                let t = r.route_token(&session.id, &session.route_tokens, &user_token, grant);
                Some(t.instrument(span).await?)
            }
            // `--check` refuses route tokens without a provider.
            (TokenPolicy::Grant(_), None) => return Err(ApiError::RouteTokenUnavailable),
        };
        Ok(Admitted {
            dpop,
            access_token,
            set_cookie,
            session: Some(session),
        })
    }

    /// The opened DPoP key of session `id`, whose stored form is `stored`.
    fn dpop_key(
        &self,
        id: &SessionId,
        stored: &crate::dpop::StoredKey,
    ) -> Result<std::sync::Arc<crate::dpop::DpopKey>, ApiError> {
        if let Some(key) = self.dpop_keys.get(id) {
            return Ok(key);
        }
        let key = crate::dpop::DpopKey::open(stored)
            .map(std::sync::Arc::new)
            .map_err(|e| {
                tracing::warn!(error = %e, "a session's DPoP key does not open");
                ApiError::Internal
            })?;
        self.dpop_keys
            .insert(id.clone(), std::sync::Arc::clone(&key));
        Ok(key)
    }

    /// The session's tokens, refreshed when `when` says so and a provider is configured.
    ///
    /// # Errors
    /// [`Freshness::into_tokens`]'s errors.
    pub async fn fresh(&self, session: UserSession, when: When) -> Result<Tokens, ApiError> {
        match &self.refresher {
            Some(r) if when == When::Now || r.due(&session.tokens) => {
                let span = crate::current_child_span!("token.refresh");
                r.ensure_fresh(session, when)
                    .instrument(span)
                    .await
                    .into_tokens()
            }
            _ => Ok(session.tokens),
        }
    }
}

/// A `Set-Cookie` re-sealing `session`'s cookie with the current key, living until the
/// session's absolute end (a refresh may move its end up to there).
pub fn resealed_cookie(live: &LiveConfig, session: &UserSession) -> String {
    let max_age = session
        .created_at
        .saturating_add(live.session.absolute_timeout.as_secs())
        .saturating_sub(now_secs());
    live.cookie.set_cookie(&session.id, max_age)
}

#[cfg(test)]
mod tests;
