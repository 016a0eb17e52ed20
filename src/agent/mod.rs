//! The OAuth agent: the endpoints an SPA calls to log in, see its session, and log out.
//!
//! One file per endpoint group (`login`, `callback`, `session` and userinfo,
//! `refresh`, `logout` and back-channel logout, `jwks` for `private_key_jwt`), each handler taking the request and
//! returning the whole response or an [`ApiError`]. The SPA contract: JSON everywhere
//! except where a browser navigates (login, callback), errors as `{"code", "message"}`,
//! and never a token in anything the browser receives.

mod callback;
mod jwks;
mod limit;
mod login;
mod logout;
mod redirect;
mod refresh;
mod routes;
mod session;
mod transaction;

pub use redirect::resolve as resolve_return_to;
pub use routes::AgentRoute;

use crate::config::OidcConfig;
use crate::guard::{check_csrf, Guard};
use crate::http::{AgentEndpoints, ApiError, Handled, LocalResponse};
use crate::live::LiveConfig;
use crate::metrics;
use crate::oidc::{OidcClient, OidcError};
use async_trait::async_trait;
use pingora::proxy::Session as HttpSession;
use std::sync::Arc;

/// The OAuth agent.
#[derive(Debug)]
pub struct Agent {
    oidc: Arc<OidcClient>,
    guard: Arc<Guard>,
    logins: limit::LoginLimiter,
    /// Recent userinfo answers by session, so the SPA's polling does not reach the provider.
    userinfo_cache: moka::sync::Cache<crate::session::SessionId, Arc<serde_json::Value>>,
}

impl Agent {
    /// An agent over a provider client and the request guard (which holds the store and
    /// the token refresher).
    pub fn new(oidc: Arc<OidcClient>, guard: Arc<Guard>) -> Self {
        let c = oidc.config();
        let logins = limit::LoginLimiter::new(c.logins_per_client, c.login_timeout);
        let userinfo_cache = moka::sync::Cache::builder()
            .max_capacity(session::USERINFO_CACHE_SIZE)
            .time_to_live(session::USERINFO_CACHE_TTL)
            .build();
        Agent {
            oidc,
            guard,
            logins,
            userinfo_cache,
        }
    }

    fn config(&self) -> &OidcConfig {
        self.oidc.config()
    }

    async fn dispatch(
        &self,
        route: AgentRoute,
        http: &mut HttpSession,
        live: &LiveConfig,
    ) -> pingora::Result<Result<LocalResponse, ApiError>> {
        if route.changes_state() {
            if let Err(e) = check_csrf(http.req_header(), &live.agent) {
                metrics::CSRF_REJECTIONS
                    .with_label_values(&[route.label()])
                    .inc();
                return Ok(Err(e));
            }
        }
        Ok(match route {
            AgentRoute::Login => self.login(http, live, login::Answer::Redirect).await,
            AgentRoute::LoginStart => self.login(http, live, login::Answer::Json).await,
            AgentRoute::Callback => self.callback(http, live).await,
            AgentRoute::Session => self.session(http, live).await,
            AgentRoute::UserInfo => self.userinfo(http, live).await,
            AgentRoute::Refresh => self.refresh(http, live).await,
            AgentRoute::Logout => self.logout(http, live).await,
            AgentRoute::LogoutEnd => self.logout_end(http).await,
            AgentRoute::BackchannelLogout => self.backchannel_logout(http).await?,
            AgentRoute::Jwks => self.jwks(),
        })
    }
}

#[async_trait]
impl AgentEndpoints for Agent {
    async fn handle(
        &self,
        http: &mut HttpSession,
        live: &LiveConfig,
        rest: &str,
    ) -> pingora::Result<Handled> {
        let route = match AgentRoute::find(&http.req_header().method, rest) {
            Ok(r) => r,
            Err(e) => {
                return Ok(Handled {
                    label: "agent",
                    outcome: Err(e),
                })
            }
        };
        Ok(Handled {
            label: route.label(),
            outcome: self.dispatch(route, http, live).await?,
        })
    }

    fn ready(&self) -> Result<(), ApiError> {
        if self.oidc.is_ready() {
            Ok(())
        } else if let Some(why) = self.oidc.unsuitable() {
            Err(ApiError::ProviderUnsuitable(why))
        } else {
            Err(ApiError::ProviderNotReady)
        }
    }
}

/// The answer to a failed provider call.
fn provider_failure(e: &OidcError) -> ApiError {
    match e {
        OidcError::Unavailable(_) => ApiError::ProviderUnavailable,
        OidcError::Misconfigured(_) => ApiError::ProviderMisconfigured,
        OidcError::InvalidGrant | OidcError::Rejected(_) | OidcError::SubjectChanged => {
            ApiError::LoginFailed
        }
    }
}
