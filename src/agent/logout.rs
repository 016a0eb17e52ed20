//! `POST /logout` (the SPA ends its session) and `POST /backchannel-logout` (the provider
//! ends the sessions a logout token names).

use super::{provider_failure, Agent};
use crate::guard::Lookup;
use crate::http::{ApiError, LocalResponse};
use crate::live::LiveConfig;
use crate::metrics;
use crate::oidc::OidcError;
use pingora::proxy::Session as HttpSession;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// The largest back-channel logout request body read.
const MAX_FORM_BODY: usize = 64 * 1024;

/// How long a logout token's `jti` is remembered, beyond twice the clock skew.
const JTI_MEMORY: Duration = Duration::from_secs(1200);

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
                    .oidc
                    .end_session_url(session.tokens.id_token.as_deref());
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
