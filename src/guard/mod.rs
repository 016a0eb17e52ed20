//! The request guard: who is this, and may it go on.
//!
//! CSRF and Origin rules (`csrf`), cookie → session ([`lookup()`]), and keeping the access
//! token fresh (`refresh`: one bounded, shared flight per session; `redeem`: the store
//! lease and the provider call under it, over the [`TokenEndpoint`] trait the provider
//! client implements). The proxy asks [`Guard::admit`] for every API request that reads the
//! session; the agent's endpoints use the same pieces.

mod csrf;
mod identity;
mod lookup;
mod redeem;
mod refresh;

pub use csrf::{check_csrf, check_route_request};
pub use identity::apply as apply_identity;
pub use lookup::{lookup, Lookup};
pub use redeem::{lease, PROVIDER_CALL_LIMIT};
pub use refresh::{Freshness, RefreshFailure, Refresher, TokenEndpoint, When, FAILURE_HOLD};

use crate::config::AuthMode;
use crate::http::ApiError;
use crate::live::LiveConfig;
use crate::metrics;
use crate::session::{now_secs, SessionId, SessionStore, Tokens, UserSession};
use pingora::http::RequestHeader;
use tracing::Instrument;

/// What an admitted request carries upstream.
#[derive(Debug)]
pub struct Admitted {
    /// The access token to forward (absent for an anonymous request on an optional route).
    pub access_token: Option<String>,
    /// A re-sealed session cookie to send back (its cookie was sealed with an older key).
    pub set_cookie: Option<String>,
    /// The session's user (`sub`), for the access log and identity headers.
    pub sub: Option<String>,
    /// The session's claims (those in `oidc.session_claims`; `Null` without a session).
    pub claims: serde_json::Value,
    /// The session's id and absolute end (unix seconds), for tracking a long-lived
    /// connection it opens; `None` without a session.
    pub session: Option<(SessionId, u64)>,
}

/// The checks every credentialed request goes through, over one session store.
#[derive(Debug)]
pub struct Guard {
    store: SessionStore,
    refresher: Option<Refresher>,
}

impl Guard {
    /// A guard over `store`; `refresher` is present when a provider can refresh tokens.
    pub fn new(store: SessionStore, refresher: Option<Refresher>) -> Self {
        Guard { store, refresher }
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
        let span = crate::current_child_span!("session.lookup");
        lookup(&self.store, &live.cookie, req)
            .instrument(span)
            .await
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
        self.lookup(req, live).await.into_session().map(|(s, _)| s)
    }

    /// Applies an API route's session policy (`mode` is not `None`): CSRF, cookie →
    /// session, token freshness. `route` labels the CSRF metric.
    ///
    /// # Errors
    /// The [`ApiError`] to answer instead of forwarding.
    pub async fn admit(
        &self,
        req: &RequestHeader,
        live: &LiveConfig,
        mode: AuthMode,
        route: &str,
    ) -> Result<Admitted, ApiError> {
        if let Err(e) = check_route_request(req, &live.agent) {
            metrics::CSRF_REJECTIONS.with_label_values(&[route]).inc();
            return Err(e);
        }
        let (mut session, reseal) = match self.lookup(req, live).await {
            Lookup::Missing if mode == AuthMode::Optional => {
                return Ok(Admitted {
                    access_token: None,
                    set_cookie: None,
                    sub: None,
                    claims: serde_json::Value::Null,
                    session: None,
                })
            }
            found => found.into_session()?,
        };
        let set_cookie = reseal.then(|| resealed_cookie(live, &session));
        let sub = session.sub.clone();
        let tracked = (session.id.clone(), session.expires_at);
        // Moved out, not copied: the refresh below needs none of them.
        let claims = std::mem::take(&mut session.claims);
        let tokens = self.fresh(session, When::Due).await?;
        Ok(Admitted {
            access_token: Some(tokens.access_token),
            set_cookie,
            sub: Some(sub),
            claims,
            session: Some(tracked),
        })
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
