//! `GET /callback`: the provider's redirect back. Finishes a login and creates the session.

use super::{provider_failure, transaction, Agent};
use crate::dpop::DpopKey;
use crate::guard::Lookup;
use crate::http::{self, ApiError, LocalResponse};
use crate::live::LiveConfig;
use crate::metrics;
use crate::session::{now_secs, SessionId, UserSession};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use pingora::http::RequestHeader;
use pingora::proxy::Session as HttpSession;
use transaction::Taken;

/// The request's login cookie (the browser binding), when well formed.
fn binding<'r>(req: &'r RequestHeader, live: &LiveConfig) -> Option<&'r str> {
    http::cookie(req, live.cookie.login_name()).filter(|b| transaction::well_formed_binding(b))
}

/// The longest provider `error` passed on, in characters.
const MAX_ERROR_CHARS: usize = 128;
/// The longest provider `error_description` passed on, in characters.
const MAX_DESCRIPTION_CHARS: usize = 300;

/// `text` without control characters, at most `max` characters.
fn bounded_text(text: &str, max: usize) -> String {
    text.chars().filter(|c| !c.is_control()).take(max).collect()
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
        let expired = transaction::state_expired(&state, config.login_timeout);
        let Some(binding) = binding(req, live) else {
            metrics::LOGINS
                .with_label_values(&["binding_mismatch"])
                .inc();
            return self
                .unless_logged_in(
                    req,
                    live,
                    expired,
                    "this login was started in another browser",
                )
                .await;
        };
        let txn = match transaction::take(store, binding, &state).await {
            Ok(Taken::Yours(t)) => t,
            Ok(found) => {
                let label = match found {
                    Taken::OtherState => "invalid_state",
                    _ => "binding_mismatch",
                };
                metrics::LOGINS.with_label_values(&[label]).inc();
                return self
                    .unless_logged_in(
                        req,
                        live,
                        expired,
                        "this login is unknown, from another browser, replaced by a newer one, or already completed",
                    )
                    .await;
            }
            Err(_) => return Err(ApiError::StoreUnavailable),
        };
        // With DPoP, the session's key exists before its tokens: the code exchange binds them.
        let dpop = if config.dpop {
            let (key, stored) = DpopKey::generate().map_err(|e| {
                tracing::error!(error = %e, "no DPoP key for a new session");
                ApiError::Internal
            })?;
            Some((key, stored))
        } else {
            None
        };
        let grant = self
            .oidc
            .exchange_code(
                &code,
                &txn.pkce_verifier,
                &txn.nonce,
                dpop.as_ref().map(|(k, _)| k),
            )
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "login failed at the code exchange");
                metrics::LOGINS.with_label_values(&["failed"]).inc();
                provider_failure(&e)
            })?;
        let claims = allowed_claims(&grant.claims, &config.session_claims);
        let user_agent = req
            .headers
            .get(::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok());
        let mut session =
            UserSession::new(grant.sub, grant.sid, claims, grant.tokens, &live.session)
                .opened_by(http::client_addr(http, &live.forwarding), user_agent);
        match dpop {
            Some((_, stored)) if grant.dpop_bound => session.dpop_key = Some(stored),
            Some(_) => tracing::warn!(
                "oidc.dpop is on but the provider issued bearer tokens; this session uses them as such"
            ),
            None => {}
        }
        if store.create(&session).await.is_err() {
            return Err(ApiError::StoreUnavailable);
        }
        // The session this browser had is replaced: end it, whether recorded when the
        // login started (a Strict cookie is not sent here) or visible now (Lax or None).
        let recorded = txn
            .old_session
            .as_deref()
            .and_then(|s| URL_SAFE_NO_PAD.decode(s).ok())
            .and_then(|b: Vec<u8>| SessionId::from_slice(&b));
        if let Some(old) = recorded.filter(|old| *old != session.id) {
            let _ = store.delete(&old).await;
        }
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
            .with_header("set-cookie", live.cookie.set_cookie(&session.id, max_age))
            .with_header(
                "set-cookie",
                live.cookie.login_clear_cookie(&live.agent.base_path),
            ))
    }

    /// A callback this browser cannot complete (replayed, expired, another browser's): when
    /// the browser already has a live session (a reload or the back button after a login
    /// that worked), back to the application rather than an error beside a valid session;
    /// otherwise the error.
    async fn unless_logged_in(
        &self,
        req: &RequestHeader,
        live: &LiveConfig,
        expired: bool,
        why: &'static str,
    ) -> Result<LocalResponse, ApiError> {
        if let Lookup::Found { .. } = self.guard.lookup(req, live).await {
            return Ok(LocalResponse::redirect(
                self.config().post_login_redirect.as_str(),
            ));
        }
        Err(if expired {
            ApiError::LoginExpired
        } else {
            ApiError::InvalidState(why)
        })
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
        // The provider's words are kept whole (bounded, control characters dropped): the
        // redirect URL-encodes them, and the SPA must treat them as text.
        let code = bounded_text(error, MAX_ERROR_CHARS);
        let description = http::query_param(req, "error_description")
            .map(|d| bounded_text(&d, MAX_DESCRIPTION_CHARS))
            .filter(|d| !d.is_empty());
        tracing::info!(
            error = %code,
            description = description.as_deref().unwrap_or(""),
            "the provider answered the login with an error"
        );
        let txn = match binding(req, live) {
            Some(b) => match transaction::take(self.guard.store(), b, state).await {
                Ok(Taken::Yours(t)) => Some(t),
                _ => None,
            },
            None => None,
        };
        let mut target = txn
            .and_then(|t| url::Url::parse(&t.return_to).ok())
            .unwrap_or_else(|| self.config().post_login_redirect.clone());
        {
            let mut query = target.query_pairs_mut();
            query.append_pair("login_error", &code);
            if let Some(d) = &description {
                query.append_pair("login_error_description", d);
            }
        }
        metrics::LOGINS.with_label_values(&["provider_error"]).inc();
        LocalResponse::redirect(target.as_str()).with_header(
            "set-cookie",
            live.cookie.login_clear_cookie(&live.agent.base_path),
        )
    }
}
