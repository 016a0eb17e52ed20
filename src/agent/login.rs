//! `GET /login` and `POST /login/start`: start a login at the provider.

use super::{provider_failure, redirect, transaction, Agent};
use crate::http::{self, ApiError, LocalResponse};
use crate::live::LiveConfig;
use crate::metrics;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use pingora::proxy::Session as HttpSession;
use serde_json::json;

/// How the authorization URL reaches the browser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Answer {
    /// A `302` (a browser navigation).
    Redirect,
    /// `{"authorization_url": …}` (the SPA navigates itself).
    Json,
}

impl Agent {
    /// Starts a login: the browser's one server-side transaction (a new login replaces the
    /// previous one), under a binding bffgate minted, with a fresh `state`, and the
    /// provider's authorization URL.
    pub(super) async fn login(
        &self,
        http: &HttpSession,
        live: &LiveConfig,
        answer: Answer,
    ) -> Result<LocalResponse, ApiError> {
        let req = http.req_header();
        let config = self.config();
        let store = self.guard.store();
        let requested = http::query_param(req, "return_to").unwrap_or_default();
        if requested.len() > transaction::MAX_RETURN_TO {
            return Err(ApiError::InvalidReturnTo);
        }
        let return_to = redirect::resolve(
            &requested,
            &config.post_login_redirect,
            &live.agent.allowed_origins,
        )
        .ok_or(ApiError::InvalidReturnTo)?;
        // Bounded as stored too: percent-encoding makes a non-ASCII character 6 bytes.
        if return_to.as_str().len() > transaction::MAX_RETURN_TO {
            return Err(ApiError::InvalidReturnTo);
        }
        let binding = self.binding(http, live).await?;
        let state = transaction::new_state();
        let started = self.oidc.start_login(&state).await.map_err(|e| {
            tracing::warn!(error = %e, "login cannot start");
            provider_failure(&e)
        })?;
        // The session cookie is `SameSite=Strict`: visible here, not at the cross-site
        // callback. The session it names is recorded now and ended there.
        let old_session = http::cookie(req, live.cookie.name())
            .and_then(|v| live.cookie.cipher().open(v).ok())
            .map(|o| URL_SAFE_NO_PAD.encode(o.id.as_bytes()));
        let txn = transaction::LoginTransaction {
            state,
            nonce: started.nonce,
            pkce_verifier: started.pkce_verifier,
            return_to: return_to.to_string(),
            old_session,
        };
        transaction::save(store, &binding, &txn, config.login_timeout)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "login transaction not saved");
                ApiError::StoreUnavailable
            })?;
        metrics::LOGINS.with_label_values(&["started"]).inc();
        let resp = match answer {
            Answer::Json => {
                LocalResponse::json(200, &json!({ "authorization_url": started.url.as_str() }))
            }
            Answer::Redirect => LocalResponse::redirect(started.url.as_str()),
        };
        // Sent every time: the cookie lives as long as the (replaced) transaction.
        Ok(resp.with_header(
            "set-cookie",
            live.cookie.login_set_cookie(
                &binding,
                &live.agent.base_path,
                config.login_timeout.as_secs(),
            ),
        ))
    }

    /// The browser's binding: its login cookie when a transaction is stored under it (so
    /// bffgate minted it), else a fresh one, if this client may start another login.
    async fn binding(&self, http: &HttpSession, live: &LiveConfig) -> Result<String, ApiError> {
        let presented = http::cookie(http.req_header(), live.cookie.login_name())
            .filter(|v| transaction::well_formed_binding(v));
        if let Some(b) = presented {
            let live_binding = transaction::exists(self.guard.store(), b)
                .await
                .map_err(|_| ApiError::StoreUnavailable)?;
            if live_binding {
                return Ok(b.to_string());
            }
        }
        if !self.logins.admit(http::client_addr(http, &live.forwarding)) {
            metrics::LOGINS.with_label_values(&["limited"]).inc();
            return Err(ApiError::TooManyLogins);
        }
        Ok(transaction::new_binding())
    }
}
