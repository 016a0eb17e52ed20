//! `GET /session` (who is logged in, until when, without any token) and `GET /userinfo`
//! (the provider's userinfo for the session's access token).

use super::{provider_failure, Agent};
use crate::guard::{resealed_cookie, Lookup, When};
use crate::http::{ApiError, LocalResponse};
use crate::live::LiveConfig;
use crate::oidc::OidcError;
use pingora::proxy::Session as HttpSession;
use serde_json::json;

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
    /// first when it is due (like a proxied call). The answer must name the session's user
    /// (OpenID Connect Core §5.3.2); another `sub` is not passed on.
    pub(super) async fn userinfo(
        &self,
        http: &HttpSession,
        live: &LiveConfig,
    ) -> Result<LocalResponse, ApiError> {
        let session = self.guard.session(http.req_header(), live).await?;
        let sub = session.sub.clone();
        let tokens = self.guard.fresh(session, When::Due).await?;
        match self.oidc.userinfo(&tokens.access_token).await {
            Ok(info) if info.get("sub").and_then(|s| s.as_str()) != Some(sub.as_str()) => {
                tracing::warn!("the provider's userinfo names another user than the session's");
                Err(ApiError::ProviderMisconfigured)
            }
            Ok(info) => Ok(LocalResponse::json(200, &info)),
            Err(OidcError::Rejected(_) | OidcError::InvalidGrant) => Err(ApiError::TokenRejected),
            Err(e) => Err(provider_failure(&e)),
        }
    }
}
