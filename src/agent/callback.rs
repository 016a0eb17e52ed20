//! `GET /callback`: the provider's redirect back. Finishes a login and creates the session.

use super::{provider_failure, transaction, Agent};
use crate::guard::Lookup;
use crate::http::{self, ApiError, LocalResponse};
use crate::live::LiveConfig;
use crate::metrics;
use crate::session::{now_secs, UserSession};
use pingora::http::RequestHeader;
use pingora::proxy::Session as HttpSession;
use subtle::ConstantTimeEq;
use transaction::LoginTransaction;

/// Whether the request's login cookie is the one `txn` was started with (compared in
/// constant time).
fn bound_here(req: &RequestHeader, live: &LiveConfig, txn: &LoginTransaction) -> bool {
    http::cookie(req, &live.cookie.login_name())
        .map(transaction::binding_hash)
        .is_some_and(|b| bool::from(b.as_bytes().ct_eq(txn.binding.as_bytes())))
}

/// The ID-token claims the SPA may see.
fn allowed_claims(all: &serde_json::Value, allow: &[String]) -> serde_json::Value {
    let map = allow
        .iter()
        .filter_map(|k| all.get(k).map(|v| (k.clone(), v.clone())))
        .collect::<serde_json::Map<_, _>>();
    serde_json::Value::Object(map)
}

impl Agent {
    /// Checks the transaction (single use, bound to this browser), exchanges the code,
    /// creates the session and sets its cookie; a provider `?error=` goes back to the SPA.
    pub(super) async fn callback(
        &self,
        http: &HttpSession,
        live: &LiveConfig,
    ) -> Result<LocalResponse, ApiError> {
        let req = http.req_header();
        let config = self.config();
        let store = self.guard.store();
        let state = http::query_param(req, "state").unwrap_or_default();
        if let Some(error) = http::query_param(req, "error") {
            return Ok(self.provider_said_no(req, live, &state, &error).await);
        }
        // RFC 9207: a response naming another issuer is a mix-up attack (a code from one
        // provider delivered as another's). Refused before the transaction is touched.
        if http::query_param(req, "iss").is_some_and(|iss| iss != config.issuer) {
            metrics::LOGINS.with_label_values(&["failed"]).inc();
            return Err(ApiError::IssuerMismatch);
        }
        let code = http::query_param(req, "code")
            .filter(|c| !c.is_empty())
            .ok_or(ApiError::InvalidRequest("the callback has no code"))?;
        let txn = match transaction::take(store, &state).await {
            Ok(Some(t)) => t,
            Ok(None) => {
                metrics::LOGINS.with_label_values(&["invalid_state"]).inc();
                let expired = transaction::state_issued_at(&state)
                    .is_some_and(|t| t.saturating_add(config.login_timeout.as_secs()) < now_secs());
                return Err(if expired {
                    ApiError::LoginExpired
                } else {
                    ApiError::InvalidState("this login is unknown or was already completed")
                });
            }
            Err(_) => return Err(ApiError::StoreUnavailable),
        };
        if !bound_here(req, live, &txn) {
            metrics::LOGINS
                .with_label_values(&["binding_mismatch"])
                .inc();
            return Err(ApiError::InvalidState(
                "this login was started in another browser",
            ));
        }
        let grant = self
            .oidc
            .exchange_code(&code, &txn.pkce_verifier, &txn.nonce)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "login failed at the code exchange");
                metrics::LOGINS.with_label_values(&["failed"]).inc();
                provider_failure(&e)
            })?;
        let claims = allowed_claims(&grant.claims, &config.session_claims);
        let session = UserSession::new(grant.sub, grant.sid, claims, grant.tokens, &live.session);
        if store.create(&session).await.is_err() {
            return Err(ApiError::StoreUnavailable);
        }
        // A session cookie the browser already had is replaced: end that session too.
        if let Lookup::Found { session: old, .. } = self.guard.lookup(req, live).await {
            let _ = store.delete(&old.id).await;
        }
        metrics::LOGINS.with_label_values(&["ok"]).inc();
        // The cookie lives until the absolute end: a refresh may move the session's end.
        let max_age = session
            .created_at
            .saturating_add(live.session.absolute_timeout.as_secs())
            .saturating_sub(now_secs());
        Ok(LocalResponse::redirect(&txn.return_to)
            .with_header("set-cookie", live.cookie.set_cookie(&session.id, max_age)))
    }

    /// The provider said no (e.g. the user cancelled): back to the SPA with
    /// `login_error`, to the transaction's `return_to` when this browser started it.
    async fn provider_said_no(
        &self,
        req: &RequestHeader,
        live: &LiveConfig,
        state: &str,
        error: &str,
    ) -> LocalResponse {
        let code: String = error
            .chars()
            .filter(|c| c.is_ascii_lowercase() || *c == '_')
            .take(64)
            .collect();
        let txn = transaction::take(self.guard.store(), state)
            .await
            .ok()
            .flatten();
        let mut target = txn
            .filter(|t| bound_here(req, live, t))
            .and_then(|t| url::Url::parse(&t.return_to).ok())
            .unwrap_or_else(|| self.config().post_login_redirect.clone());
        target.query_pairs_mut().append_pair("login_error", &code);
        metrics::LOGINS.with_label_values(&["provider_error"]).inc();
        LocalResponse::redirect(target.as_str())
    }
}
