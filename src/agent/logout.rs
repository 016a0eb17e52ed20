//! `POST /logout` (the SPA ends its session), `GET /logout/end` (the one-time link to the
//! provider's end-session endpoint it answers with) and `POST /backchannel-logout` (the
//! provider ends the sessions a logout token names).
//!
//! No token reaches the page: `POST /logout` answers with a `logout_url` naming a random,
//! single-use handle on bffgate; the ID token it stands for (the `id_token_hint`) stays in
//! the store until the browser follows the link and bffgate redirects it to the provider
//! with the hint added.

use super::{provider_failure, Agent};
use crate::guard::Lookup;
use crate::http::{self, ApiError, LocalResponse};
use crate::live::LiveConfig;
use crate::metrics;
use crate::oidc::OidcError;
use base64::Engine;
use pingora::proxy::Session as HttpSession;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// The largest back-channel logout request body read.
const MAX_FORM_BODY: usize = 64 * 1024;

/// How long a logout token's `jti` is remembered, beyond twice the clock skew.
const JTI_MEMORY: Duration = Duration::from_secs(1200);

/// How long the one-time logout link `POST /logout` answers with can be followed.
pub const LOGOUT_LINK_TTL: Duration = Duration::from_secs(300);

/// The store name of a logout link's handle.
fn link_name(handle: &str) -> String {
    format!("logout:{handle}")
}

impl Agent {
    /// Ends the session here, revokes its refresh token in the background, clears the
    /// cookie and offers the provider's logout URL.
    pub(super) async fn logout(
        &self,
        http: &HttpSession,
        live: &LiveConfig,
    ) -> Result<LocalResponse, ApiError> {
        let mut logout_url = None;
        match self.guard.lookup(http.req_header(), live).await {
            Lookup::Found { session, .. } => {
                if self.guard.store().delete(&session.id).await.is_err() {
                    return Err(ApiError::StoreUnavailable);
                }
                logout_url = self
                    .logout_link(live, session.tokens.id_token.as_deref())
                    .await;
                if let Some(rt) = session.tokens.refresh_token.clone() {
                    let oidc = Arc::clone(&self.oidc);
                    tokio::spawn(async move { oidc.revoke(&rt).await });
                }
                metrics::LOGOUTS.with_label_values(&["ok"]).inc();
            }
            Lookup::StoreFailed(_) => return Err(ApiError::StoreUnavailable),
            _ => metrics::LOGOUTS.with_label_values(&["no_session"]).inc(),
        }
        Ok(LocalResponse::json(
            200,
            &json!({ "logout_url": logout_url.map(|u| u.to_string()) }),
        )
        .with_header("set-cookie", live.cookie.clear_cookie()))
    }

    /// The `logout_url` for a session that held `id_token`: a one-time link on bffgate when
    /// the provider has an end-session endpoint (`None` otherwise). Should the link not be
    /// storable, the provider's URL without the hint: never a token.
    async fn logout_link(&self, live: &LiveConfig, id_token: Option<&str>) -> Option<url::Url> {
        let direct = self.oidc.end_session_url(None)?;
        let handle = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(crate::random::os_bytes::<32>());
        let hint = id_token.unwrap_or_default().as_bytes();
        let store = self.guard.store();
        if let Err(e) = store
            .put_transient(&link_name(&handle), hint, LOGOUT_LINK_TTL)
            .await
        {
            tracing::warn!(error = %e, "logout link not stored; logout_url goes without id_token_hint");
            return Some(direct);
        }
        let mut link = self.config().redirect_uri.clone();
        link.set_path(&format!("{}/logout/end", live.agent.base_path));
        link.set_query(None);
        link.set_fragment(None);
        link.query_pairs_mut().append_pair("handle", &handle);
        Some(link)
    }

    /// `GET /logout/end?handle=…`: follows a logout link once, to the provider's
    /// end-session endpoint with the session's ID token as `id_token_hint`.
    pub(super) async fn logout_end(&self, http: &HttpSession) -> Result<LocalResponse, ApiError> {
        let handle = http::query_param(http.req_header(), "handle")
            .filter(|h| !h.is_empty() && h.len() <= 64)
            .ok_or(ApiError::InvalidRequest("the logout link has no handle"))?;
        let hint = match self.guard.store().take_transient(&link_name(&handle)).await {
            Ok(Some(hint)) => hint,
            Ok(None) => {
                return Err(ApiError::InvalidRequest(
                    "the logout link is unknown, used or expired",
                ))
            }
            Err(_) => return Err(ApiError::StoreUnavailable),
        };
        let hint = String::from_utf8(hint).ok().filter(|h| !h.is_empty());
        let to = self
            .oidc
            .end_session_url(hint.as_deref())
            .ok_or(ApiError::ProviderUnavailable)?;
        Ok(LocalResponse::redirect(to.as_str())
            // The provider's URL carries the ID token: never send it on as a Referer.
            .with_header("referrer-policy", "no-referrer".into()))
    }

    /// Validates the logout token (once per `jti`) and deletes the sessions it names.
    ///
    /// # Errors
    /// Reading the body failed (the client is gone).
    pub(super) async fn backchannel_logout(
        &self,
        http: &mut HttpSession,
    ) -> pingora::Result<Result<LocalResponse, ApiError>> {
        let mut body = Vec::new();
        while let Some(chunk) = http.read_request_body().await? {
            if body.len() + chunk.len() > MAX_FORM_BODY {
                return Ok(Err(ApiError::BodyTooLarge));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(self.end_sessions_named_in(&body).await)
    }

    async fn end_sessions_named_in(&self, form: &[u8]) -> Result<LocalResponse, ApiError> {
        let token = url::form_urlencoded::parse(form)
            .find(|(k, _)| k == "logout_token")
            .map(|(_, v)| v.into_owned())
            .ok_or(ApiError::InvalidRequest("logout_token is missing"))?;
        let claims = self.oidc.validate_logout_token(&token).await.map_err(|e| {
            tracing::warn!(error = %e, "back-channel logout refused");
            metrics::LOGOUTS
                .with_label_values(&["backchannel_refused"])
                .inc();
            match e {
                OidcError::Unavailable(_) | OidcError::Misconfigured(_) => provider_failure(&e),
                _ => ApiError::InvalidLogoutToken("the logout token is not valid"),
            }
        })?;
        let store = self.guard.store();
        // The sessions go first, the `jti` is claimed after: a store failure in between
        // answers 503 with nothing claimed, so the provider's retry is not taken for a
        // replay. A replay deletes what the first delivery already deleted, then is refused.
        let deleted = match (&claims.sid, &claims.sub) {
            (Some(sid), _) => store.delete_by_sid(sid).await,
            (None, Some(sub)) => store.delete_by_sub(sub).await,
            (None, None) => Ok(0),
        };
        let n = deleted.map_err(|_| ApiError::StoreUnavailable)?;
        let ttl = JTI_MEMORY.saturating_add(self.config().clock_skew.saturating_mul(2));
        match store.claim_once(&format!("jti:{}", claims.jti), ttl).await {
            Ok(true) => {}
            Ok(false) => {
                metrics::LOGOUTS
                    .with_label_values(&["backchannel_replay"])
                    .inc();
                return Err(ApiError::InvalidLogoutToken(
                    "this logout token was already used",
                ));
            }
            Err(_) => return Err(ApiError::StoreUnavailable),
        }
        tracing::info!(sessions = n, "back-channel logout");
        metrics::LOGOUTS.with_label_values(&["backchannel"]).inc();
        Ok(LocalResponse::empty(200))
    }
}
