//! `GET /login` and `POST /login/start`: start a login at the provider.

use super::{provider_failure, redirect, transaction, Agent};
use crate::http::{self, ApiError, LocalResponse};
use crate::live::LiveConfig;
use crate::metrics;
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
    /// Starts a login: a server-side transaction under a fresh `state`, bound to the
    /// browser's login cookie, and the provider's authorization URL.
    pub(super) async fn login(
        &self,
        http: &HttpSession,
        live: &LiveConfig,
        answer: Answer,
    ) -> Result<LocalResponse, ApiError> {
        let req = http.req_header();
        let config = self.config();
        let requested = http::query_param(req, "return_to").unwrap_or_default();
        let return_to = redirect::resolve(
            &requested,
            &config.post_login_redirect,
            &live.agent.allowed_origins,
        )
        .ok_or(ApiError::InvalidReturnTo)?;
        let state = transaction::new_state();
        let started = self.oidc.start_login(&state).await.map_err(|e| {
            tracing::warn!(error = %e, "login cannot start");
            provider_failure(&e)
        })?;
        // One login cookie per browser, however many tabs log in at once: reuse it.
        let existing = http::cookie(req, &live.cookie.login_name()).filter(|v| v.len() == 43);
        let (binding, set_cookie) = match existing {
            Some(b) => (b.to_string(), None),
            None => {
                let b = transaction::new_binding();
                let c = live.cookie.login_set_cookie(
                    &b,
                    &live.agent.base_path,
                    config.login_timeout.as_secs(),
                );
                (b, Some(c))
            }
        };
        let txn = transaction::LoginTransaction {
            nonce: started.nonce,
            pkce_verifier: started.pkce_verifier,
            return_to: return_to.to_string(),
            binding: transaction::binding_hash(&binding),
        };
        transaction::save(self.guard.store(), &state, &txn, config.login_timeout)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "login transaction not saved");
                ApiError::StoreUnavailable
            })?;
        metrics::LOGINS.with_label_values(&["started"]).inc();
        let mut resp = match answer {
            Answer::Json => {
                LocalResponse::json(200, &json!({ "authorization_url": started.url.as_str() }))
            }
            Answer::Redirect => LocalResponse::redirect(started.url.as_str()),
        };
        if let Some(c) = set_cookie {
            resp = resp.with_header("set-cookie", c);
        }
        Ok(resp)
    }
}
