//! The OAuth agent: the endpoints an SPA calls to log in, see its session, and log out.
//!
//! One function per endpoint, each taking the request and returning the whole response.
//! The SPA contract: JSON everywhere except where a browser navigates (login, callback),
//! errors as `{"code", "message"}`, and never a token in anything the browser receives.

mod redirect;
mod refresh;
mod transaction;

pub use redirect::resolve as resolve_return_to;
pub use refresh::{Freshness, Refresher};

use crate::config::OidcConfig;
use crate::oidc::{OidcClient, OidcError};
use crate::proxy::auth::{check_csrf, lookup, Lookup};
use crate::proxy::{LocalResponse, Snapshot};
use crate::session::{now_secs, Session, SessionStore};
use http::Method;
use pingora::proxy::Session as HttpSession;
use serde_json::json;
use std::sync::Arc;
use subtle::ConstantTimeEq;
use transaction::LoginTransaction;

/// The agent's endpoints, relative to `agent.base_path`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentRoute {
    /// `GET /login`: 302 to the provider.
    Login,
    /// `POST /login/start`: the authorization URL as JSON.
    LoginStart,
    /// `GET /callback`: the provider's redirect back.
    Callback,
    /// `GET /session`: who is logged in.
    Session,
    /// `GET /userinfo`: the provider's userinfo.
    UserInfo,
    /// `POST /refresh`: refresh the access token now.
    Refresh,
    /// `POST /logout`: end the session.
    Logout,
    /// `POST /backchannel-logout`: the provider ends sessions.
    BackchannelLogout,
}

impl AgentRoute {
    /// Every endpoint with its method and path (relative to the base path).
    pub const ALL: [(AgentRoute, Method, &'static str); 8] = [
        (AgentRoute::Login, Method::GET, "/login"),
        (AgentRoute::LoginStart, Method::POST, "/login/start"),
        (AgentRoute::Callback, Method::GET, "/callback"),
        (AgentRoute::Session, Method::GET, "/session"),
        (AgentRoute::UserInfo, Method::GET, "/userinfo"),
        (AgentRoute::Refresh, Method::POST, "/refresh"),
        (AgentRoute::Logout, Method::POST, "/logout"),
        (
            AgentRoute::BackchannelLogout,
            Method::POST,
            "/backchannel-logout",
        ),
    ];

    /// The endpoint for a path under the base path: `Ok` with the route, `Err(true)` when
    /// the path exists with another method, `Err(false)` when it does not exist.
    pub fn find(method: &Method, rest: &str) -> Result<AgentRoute, bool> {
        let mut path_known = false;
        for (route, m, p) in &Self::ALL {
            if *p == rest {
                let head_as_get = *m == Method::GET && *method == Method::HEAD;
                if m == method || head_as_get {
                    return Ok(*route);
                }
                path_known = true;
            }
        }
        Err(path_known)
    }

    /// A bounded label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            AgentRoute::Login => "agent_login",
            AgentRoute::LoginStart => "agent_login_start",
            AgentRoute::Callback => "agent_callback",
            AgentRoute::Session => "agent_session",
            AgentRoute::UserInfo => "agent_userinfo",
            AgentRoute::Refresh => "agent_refresh",
            AgentRoute::Logout => "agent_logout",
            AgentRoute::BackchannelLogout => "agent_backchannel_logout",
        }
    }
}

/// The largest back-channel logout request body read.
const MAX_FORM_BODY: usize = 64 * 1024;

/// The OAuth agent.
#[derive(Debug)]
pub struct Agent {
    oidc: Arc<OidcClient>,
    store: SessionStore,
    refresher: Refresher,
}

fn query_param(req: &pingora::http::RequestHeader, name: &str) -> Option<String> {
    let q = req.uri.query()?;
    url::form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn oidc_failure(e: &OidcError) -> LocalResponse {
    match e {
        OidcError::Unavailable(_) => LocalResponse::error(
            502,
            "provider_unavailable",
            "the identity provider cannot be reached; try again",
        ),
        OidcError::Misconfigured(_) => LocalResponse::error(
            502,
            "provider_misconfigured",
            "the identity provider's configuration is not acceptable",
        ),
        OidcError::InvalidGrant | OidcError::Rejected(_) => LocalResponse::error(
            400,
            "login_failed",
            "the identity provider's answer was refused",
        ),
    }
}

fn store_failure() -> LocalResponse {
    LocalResponse::error(
        503,
        "session_store_unavailable",
        "sessions cannot be read right now; try again",
    )
}

fn redirect(to: &str) -> LocalResponse {
    LocalResponse::empty(302).with_header("location", to.to_string())
}

impl Agent {
    /// An agent over a provider client and the session store.
    pub fn new(
        oidc: Arc<OidcClient>,
        store: SessionStore,
        session: &crate::config::SessionConfig,
    ) -> Self {
        let refresher = Refresher::new(
            Arc::clone(&oidc),
            store.clone(),
            session.refresh_before_expiry,
            session.refresh_lock_wait,
        );
        Agent {
            oidc,
            store,
            refresher,
        }
    }

    /// The token refresher the proxy path uses.
    pub fn refresher(&self) -> &Refresher {
        &self.refresher
    }

    /// The provider client.
    pub fn oidc(&self) -> &Arc<OidcClient> {
        &self.oidc
    }

    fn config(&self) -> &OidcConfig {
        self.oidc.config()
    }

    /// Answers one agent request.
    ///
    /// # Errors
    /// Reading the request body failed (the connection is gone).
    pub async fn handle(
        &self,
        route: AgentRoute,
        http: &mut HttpSession,
        snap: &Snapshot,
    ) -> pingora::Result<LocalResponse> {
        let req = http.req_header();
        if matches!(
            route,
            AgentRoute::LoginStart | AgentRoute::Logout | AgentRoute::Refresh
        ) {
            if let Err(why) = check_csrf(req, &snap.agent) {
                crate::metrics::CSRF_REJECTIONS
                    .with_label_values(&[route.label()])
                    .inc();
                return Ok(LocalResponse::error(403, "csrf_violation", why));
            }
        }
        Ok(match route {
            AgentRoute::Login => self.login(http, snap, false).await,
            AgentRoute::LoginStart => self.login(http, snap, true).await,
            AgentRoute::Callback => self.callback(http, snap).await,
            AgentRoute::Session => self.session(http, snap).await,
            AgentRoute::UserInfo => self.userinfo(http, snap).await,
            AgentRoute::Refresh => self.refresh(http, snap).await,
            AgentRoute::Logout => self.logout(http, snap).await,
            AgentRoute::BackchannelLogout => self.backchannel_logout(http).await?,
        })
    }

    fn login_cookie_name(snap: &Snapshot) -> String {
        format!("{}_login", snap.cookie.name())
    }

    /// Whether the request's login cookie is the one `txn` was started with (compared in
    /// constant time).
    fn bound_here(
        req: &pingora::http::RequestHeader,
        snap: &Snapshot,
        txn: &LoginTransaction,
    ) -> bool {
        find_cookie(req, &Self::login_cookie_name(snap))
            .map(transaction::binding_hash)
            .is_some_and(|b| bool::from(b.as_bytes().ct_eq(txn.binding.as_bytes())))
    }

    /// The login-binding cookie. `SameSite=Lax`, not Strict: the provider's redirect back
    /// to the callback is a cross-site navigation, on which browsers withhold Strict cookies.
    fn login_cookie(&self, snap: &Snapshot, value: &str, max_age: u64) -> String {
        let host_prefixed = snap.cookie.name().starts_with("__Host-");
        let path = if host_prefixed {
            "/"
        } else {
            snap.agent.base_path.as_str()
        };
        let secure = if snap.cookie.secure() { "; Secure" } else { "" };
        format!(
            "{}={value}; Path={path}; HttpOnly{secure}; SameSite=Lax; Max-Age={max_age}",
            Self::login_cookie_name(snap)
        )
    }

    /// `GET /login` (302) and `POST /login/start` (JSON): starts a login.
    async fn login(&self, http: &HttpSession, snap: &Snapshot, json_answer: bool) -> LocalResponse {
        let req = http.req_header();
        let config = self.config();
        let requested = query_param(req, "return_to").unwrap_or_default();
        let Some(return_to) = resolve_return_to(
            &requested,
            &config.post_login_redirect,
            &snap.agent.allowed_origins,
        ) else {
            return LocalResponse::error(
                400,
                "invalid_return_to",
                "return_to must be a path or a URL on an allowed origin",
            );
        };
        let state = transaction::new_state();
        let started = match self.oidc.start_login(&state).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "login cannot start");
                return oidc_failure(&e);
            }
        };
        // One login cookie per browser, however many tabs log in at once: reuse it.
        let cookie_name = Self::login_cookie_name(snap);
        let existing = find_cookie(req, &cookie_name).filter(|v| v.len() == 43);
        let (binding, set_cookie) = match existing {
            Some(b) => (b.to_string(), None),
            None => {
                let b = transaction::new_binding();
                let c = self.login_cookie(snap, &b, config.login_timeout.as_secs());
                (b, Some(c))
            }
        };
        let txn = LoginTransaction {
            nonce: started.nonce,
            pkce_verifier: started.pkce_verifier,
            return_to: return_to.to_string(),
            binding: transaction::binding_hash(&binding),
        };
        if let Err(e) = transaction::save(&self.store, &state, &txn, config.login_timeout).await {
            tracing::warn!(error = %e, "login transaction not saved");
            return store_failure();
        }
        crate::metrics::LOGINS.with_label_values(&["started"]).inc();
        let mut resp = if json_answer {
            LocalResponse::json(200, &json!({ "authorization_url": started.url.as_str() }))
        } else {
            redirect(started.url.as_str())
        };
        if let Some(c) = set_cookie {
            resp = resp.with_header("set-cookie", c);
        }
        resp
    }

    /// `GET /callback`: finishes a login and creates the session.
    async fn callback(&self, http: &HttpSession, snap: &Snapshot) -> LocalResponse {
        let req = http.req_header();
        let config = self.config();
        let state = query_param(req, "state").unwrap_or_default();
        if let Some(error) = query_param(req, "error") {
            // The provider said no (e.g. the user cancelled): tell the SPA, not the world.
            let code: String = error
                .chars()
                .filter(|c| c.is_ascii_lowercase() || *c == '_')
                .take(64)
                .collect();
            let txn = transaction::take(&self.store, &state).await.ok().flatten();
            let mut target = txn
                .filter(|t| Self::bound_here(req, snap, t))
                .and_then(|t| url::Url::parse(&t.return_to).ok())
                .unwrap_or_else(|| config.post_login_redirect.clone());
            target.query_pairs_mut().append_pair("login_error", &code);
            crate::metrics::LOGINS
                .with_label_values(&["provider_error"])
                .inc();
            return redirect(target.as_str());
        }
        // RFC 9207: a response naming another issuer is a mix-up attack (a code from one
        // provider delivered as another's). Refused before the transaction is touched.
        if query_param(req, "iss").is_some_and(|iss| iss != config.issuer) {
            crate::metrics::LOGINS.with_label_values(&["failed"]).inc();
            return LocalResponse::error(
                400,
                "issuer_mismatch",
                "the authorization response names another issuer",
            );
        }
        let Some(code) = query_param(req, "code").filter(|c| !c.is_empty()) else {
            return LocalResponse::error(400, "invalid_request", "the callback has no code");
        };
        let txn = match transaction::take(&self.store, &state).await {
            Ok(Some(t)) => t,
            Ok(None) => {
                crate::metrics::LOGINS
                    .with_label_values(&["invalid_state"])
                    .inc();
                let expired = transaction::state_issued_at(&state)
                    .is_some_and(|t| t + config.login_timeout.as_secs() < now_secs());
                return if expired {
                    LocalResponse::error(
                        400,
                        "login_expired",
                        "the login took too long; start again",
                    )
                } else {
                    LocalResponse::error(
                        400,
                        "invalid_state",
                        "this login is unknown or was already completed",
                    )
                };
            }
            Err(_) => return store_failure(),
        };
        if !Self::bound_here(req, snap, &txn) {
            crate::metrics::LOGINS
                .with_label_values(&["binding_mismatch"])
                .inc();
            return LocalResponse::error(
                400,
                "invalid_state",
                "this login was started in another browser",
            );
        }
        let grant = match self
            .oidc
            .exchange_code(&code, &txn.pkce_verifier, &txn.nonce)
            .await
        {
            Ok(g) => g,
            Err(e) => {
                tracing::warn!(error = %e, "login failed at the code exchange");
                crate::metrics::LOGINS.with_label_values(&["failed"]).inc();
                return oidc_failure(&e);
            }
        };
        let claims = allowed_claims(&grant.claims, &config.session_claims);
        let session = Session::new(grant.sub, grant.sid, claims, grant.tokens, &snap.session);
        if self.store.create(&session).await.is_err() {
            return store_failure();
        }
        // A session cookie the browser already had is replaced: end that session too.
        if let Lookup::Found { session: old, .. } = lookup(&self.store, &snap.cookie, req).await {
            let _ = self.store.delete(&old.id).await;
        }
        crate::metrics::LOGINS.with_label_values(&["ok"]).inc();
        let max_age = session.expires_at.saturating_sub(now_secs());
        redirect(&txn.return_to)
            .with_header("set-cookie", snap.cookie.set_cookie(&session.id, max_age))
    }

    /// `GET /session`: who is logged in, without any token.
    async fn session(&self, http: &HttpSession, snap: &Snapshot) -> LocalResponse {
        match lookup(&self.store, &snap.cookie, http.req_header()).await {
            Lookup::Found { session, reseal } => {
                let resp = LocalResponse::json(
                    200,
                    &json!({
                        "authenticated": true,
                        "sub": session.sub,
                        "claims": session.claims,
                        "expires_at": session.expires_at,
                        "access_token_expires_at": session.tokens.access_expires_at,
                    }),
                );
                if reseal {
                    let max_age = session.expires_at.saturating_sub(now_secs());
                    resp.with_header("set-cookie", snap.cookie.set_cookie(&session.id, max_age))
                } else {
                    resp
                }
            }
            Lookup::Missing => LocalResponse::json(200, &json!({ "authenticated": false })),
            Lookup::Invalid(_) | Lookup::Expired => {
                LocalResponse::json(200, &json!({ "authenticated": false }))
                    .with_header("set-cookie", snap.cookie.clear_cookie())
            }
            Lookup::StoreFailed(_) => store_failure(),
        }
    }

    /// `GET /userinfo`: the provider's userinfo for the session's access token.
    async fn userinfo(&self, http: &HttpSession, snap: &Snapshot) -> LocalResponse {
        let session = match lookup(&self.store, &snap.cookie, http.req_header()).await {
            Lookup::Found { session, .. } => session,
            other => return session_refusal(&other, snap),
        };
        match self.oidc.userinfo(&session.tokens.access_token).await {
            Ok(info) => LocalResponse::json(200, &info),
            Err(OidcError::Rejected(_) | OidcError::InvalidGrant) => LocalResponse::error(
                401,
                "session_expired",
                "the provider no longer accepts this session's token",
            ),
            Err(e) => oidc_failure(&e),
        }
    }

    /// `POST /refresh`: refreshes the session's access token now.
    async fn refresh(&self, http: &HttpSession, snap: &Snapshot) -> LocalResponse {
        let session = match lookup(&self.store, &snap.cookie, http.req_header()).await {
            Lookup::Found { session, .. } => session,
            other => return session_refusal(&other, snap),
        };
        if session.tokens.refresh_token.is_none() {
            return LocalResponse::error(
                409,
                "no_refresh_token",
                "this session has no refresh token",
            );
        }
        match self.refresher.ensure_fresh(session, true).await {
            Freshness::Fresh(t) => LocalResponse::json(
                200,
                &json!({ "access_token_expires_at": t.access_expires_at }),
            ),
            Freshness::Ended => session_refusal(&Lookup::Expired, snap),
            Freshness::Unavailable => refresh_unavailable(),
        }
    }

    /// `POST /logout`: ends the session here and offers the provider's logout URL.
    async fn logout(&self, http: &HttpSession, snap: &Snapshot) -> LocalResponse {
        let mut logout_url = None;
        match lookup(&self.store, &snap.cookie, http.req_header()).await {
            Lookup::Found { session, .. } => {
                if self.store.delete(&session.id).await.is_err() {
                    return store_failure();
                }
                logout_url = self
                    .oidc
                    .end_session_url(session.tokens.id_token.as_deref());
                if let Some(rt) = session.tokens.refresh_token.clone() {
                    let rt: String = rt;
                    let oidc = Arc::clone(&self.oidc);
                    tokio::spawn(async move { oidc.revoke(&rt).await });
                }
                crate::metrics::LOGOUTS.with_label_values(&["ok"]).inc();
            }
            Lookup::StoreFailed(_) => return store_failure(),
            _ => crate::metrics::LOGOUTS
                .with_label_values(&["no_session"])
                .inc(),
        }
        LocalResponse::json(
            200,
            &json!({ "logout_url": logout_url.map(|u| u.to_string()) }),
        )
        .with_header("set-cookie", snap.cookie.clear_cookie())
    }

    /// `POST /backchannel-logout`: the provider ends the sessions a logout token names.
    async fn backchannel_logout(&self, http: &mut HttpSession) -> pingora::Result<LocalResponse> {
        let mut body = Vec::new();
        while let Some(chunk) = http.read_request_body().await? {
            if body.len() + chunk.len() > MAX_FORM_BODY {
                return Ok(LocalResponse::error(
                    413,
                    "body_too_large",
                    "the logout request is too large",
                ));
            }
            body.extend_from_slice(&chunk);
        }
        let token = url::form_urlencoded::parse(&body)
            .find(|(k, _)| k == "logout_token")
            .map(|(_, v)| v.into_owned());
        let Some(token) = token else {
            return Ok(LocalResponse::error(
                400,
                "invalid_request",
                "logout_token is missing",
            ));
        };
        let claims = match self.oidc.validate_logout_token(&token).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "back-channel logout refused");
                crate::metrics::LOGOUTS
                    .with_label_values(&["backchannel_refused"])
                    .inc();
                return Ok(match e {
                    OidcError::Unavailable(_) | OidcError::Misconfigured(_) => oidc_failure(&e),
                    _ => LocalResponse::error(
                        400,
                        "invalid_logout_token",
                        "the logout token is not valid",
                    ),
                });
            }
        };
        let ttl = std::time::Duration::from_secs(1200) + self.config().clock_skew * 2;
        match self
            .store
            .claim_once(&format!("jti:{}", claims.jti), ttl)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                crate::metrics::LOGOUTS
                    .with_label_values(&["backchannel_replay"])
                    .inc();
                return Ok(LocalResponse::error(
                    400,
                    "invalid_logout_token",
                    "this logout token was already used",
                ));
            }
            Err(_) => return Ok(store_failure()),
        }
        let deleted = match (&claims.sid, &claims.sub) {
            (Some(sid), _) => self.store.delete_by_sid(sid).await,
            (None, Some(sub)) => self.store.delete_by_sub(sub).await,
            (None, None) => Ok(0),
        };
        match deleted {
            Ok(n) => {
                tracing::info!(sessions = n, "back-channel logout");
                crate::metrics::LOGOUTS
                    .with_label_values(&["backchannel"])
                    .inc();
                Ok(LocalResponse::empty(200))
            }
            Err(_) => Ok(store_failure()),
        }
    }
}

/// The 503 for a token that could not be refreshed and has expired.
pub fn refresh_unavailable() -> LocalResponse {
    LocalResponse::error(
        503,
        "refresh_unavailable",
        "the access token could not be refreshed; try again",
    )
}

/// The 401 (or 503) for a lookup that found no live session.
pub fn session_refusal(l: &Lookup, snap: &Snapshot) -> LocalResponse {
    match l {
        Lookup::Missing => LocalResponse::error(401, "no_session", "no session: log in first"),
        Lookup::Invalid(_) => {
            LocalResponse::error(401, "invalid_session", "the session cookie is not valid")
                .with_header("set-cookie", snap.cookie.clear_cookie())
        }
        Lookup::Expired => LocalResponse::error(
            401,
            "session_expired",
            "the session has ended: log in again",
        )
        .with_header("set-cookie", snap.cookie.clear_cookie()),
        Lookup::StoreFailed(_) => store_failure(),
        Lookup::Found { .. } => {
            LocalResponse::error(500, "internal_error", "unexpected session state")
        }
    }
}

/// The value of cookie `name` in the request, if any.
fn find_cookie<'r>(req: &'r pingora::http::RequestHeader, name: &str) -> Option<&'r str> {
    crate::cookie::cookie_value(
        req.headers
            .get_all(http::header::COOKIE)
            .iter()
            .map(|v| v.as_bytes()),
        name,
    )
}

/// The ID-token claims the SPA may see.
fn allowed_claims(all: &serde_json::Value, allow: &[String]) -> serde_json::Value {
    let map = allow
        .iter()
        .filter_map(|k| all.get(k).map(|v| (k.clone(), v.clone())))
        .collect::<serde_json::Map<_, _>>();
    serde_json::Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `docs/openapi.yaml` lists exactly the endpoints [`AgentRoute::ALL`] serves.
    #[test]
    fn openapi_describes_every_endpoint_and_no_other() {
        let text = include_str!("../../docs/openapi.yaml");
        let doc: serde_yaml::Value = serde_yaml::from_str(text).expect("openapi.yaml parses");
        let paths = doc
            .get("paths")
            .and_then(|p| p.as_mapping())
            .expect("paths");
        let mut documented: Vec<(String, String)> = Vec::new();
        for (path, ops) in paths {
            for (method, _) in ops.as_mapping().expect("operations") {
                documented.push((
                    method.as_str().expect("method").to_ascii_uppercase(),
                    path.as_str().expect("path").to_string(),
                ));
            }
        }
        documented.sort();
        let mut served: Vec<(String, String)> = AgentRoute::ALL
            .iter()
            .map(|(_, m, p)| (m.to_string(), (*p).to_string()))
            .collect();
        served.sort();
        assert_eq!(documented, served);
    }

    #[test]
    fn routes_resolve_by_method_and_path() {
        assert_eq!(
            AgentRoute::find(&Method::GET, "/session"),
            Ok(AgentRoute::Session)
        );
        assert_eq!(
            AgentRoute::find(&Method::HEAD, "/session"),
            Ok(AgentRoute::Session)
        );
        assert_eq!(AgentRoute::find(&Method::GET, "/logout"), Err(true));
        assert_eq!(AgentRoute::find(&Method::GET, "/nope"), Err(false));
    }
}
