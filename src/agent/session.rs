//! `GET /session` (who is logged in, until when, without any token) and `GET /userinfo`
//! (the provider's userinfo for the session's access token).

use super::{provider_failure, Agent};
use crate::dpop::DpopKey;
use crate::guard::{resealed_cookie, Lookup, When};
use crate::http::{ApiError, LocalResponse};
use crate::live::LiveConfig;
use crate::oidc::OidcError;
use crate::session::now_secs;
use pingora::proxy::Session as HttpSession;
use serde_json::json;

/// How long a session's userinfo answer is reused.
pub(super) const USERINFO_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(30);
/// How many sessions' userinfo answers are kept at most.
pub(super) const USERINFO_CACHE_SIZE: u64 = 10_000;

impl Agent {
    /// `GET /session`: `authenticated: false` (clearing a dead cookie) or the session's
    /// subject, allowed claims and ends.
    pub(super) async fn session(
        &self,
        http: &HttpSession,
        live: &LiveConfig,
    ) -> Result<LocalResponse, ApiError> {
        match self.guard.lookup(http.req_header(), live).await {
            Lookup::Found { session, reseal } => {
                // This read restarted the idle timeout: the session ends after that much
                // quiet, or at its hard end, whichever comes first.
                let idle_expires_at =
                    now_secs().saturating_add(live.session.idle_timeout.as_secs());
                let resp = LocalResponse::json(
                    200,
                    &json!({
                        "authenticated": true,
                        "sub": session.sub,
                        "claims": session.claims,
                        "expires_at": session.expires_at,
                        "idle_expires_at": idle_expires_at,
                        "ends_at": idle_expires_at.min(session.expires_at),
                        "access_token_expires_at": session.tokens.access_expires_at,
                        "logout_url": format!("{}/logout", live.agent.base_path),
                    }),
                );
                Ok(if reseal {
                    resp.with_header("set-cookie", resealed_cookie(live, &session))
                } else {
                    resp
                })
            }
            Lookup::Missing => Ok(LocalResponse::json(200, &json!({ "authenticated": false }))),
            Lookup::Invalid(_) | Lookup::Expired => {
                Ok(LocalResponse::json(200, &json!({ "authenticated": false }))
                    .with_header("set-cookie", live.cookie.clear_cookie()))
            }
            Lookup::StoreFailed(_) => Err(ApiError::StoreUnavailable),
        }
    }

    /// `GET /userinfo`: the provider's answer for the session's access token, refreshed
    /// first when it is due (like a proxied call), kept for [`USERINFO_CACHE_TTL`] per
    /// session (only a live session reaches the cache). The answer must name the session's user
    /// (OpenID Connect Core §5.3.2); another `sub` is not passed on.
    pub(super) async fn userinfo(
        &self,
        http: &HttpSession,
        live: &LiveConfig,
    ) -> Result<LocalResponse, ApiError> {
        let session = self.guard.session(http.req_header(), live).await?;
        let key = session.id.clone();
        if let Some(info) = self.userinfo_cache.get(&key) {
            return Ok(LocalResponse::json(200, &info));
        }
        let sub = session.sub.clone();
        let dpop = session
            .dpop_key
            .as_ref()
            .and_then(|k| DpopKey::open(k).ok());
        let tokens = self.guard.fresh(session, When::Due).await?;
        match self
            .oidc
            .userinfo(&tokens.access_token, dpop.as_ref())
            .await
        {
            Ok(info) if info.get("sub").and_then(|s| s.as_str()) != Some(sub.as_str()) => {
                tracing::warn!("the provider's userinfo names another user than the session's");
                Err(ApiError::ProviderMisconfigured)
            }
            Ok(info) => {
                let resp = LocalResponse::json(200, &info);
                self.userinfo_cache.insert(key, std::sync::Arc::new(info));
                Ok(resp)
            }
            Err(OidcError::Rejected(_) | OidcError::InvalidGrant) => Err(ApiError::TokenRejected),
            Err(e) => Err(provider_failure(&e)),
        }
    }
}
